"""The admin's changelist search is served by indexes on the real PostgreSQL.

EXPLAIN of the changelist's own query over enough seeded rows, with fresh statistics:
no planner switches are touched, so the plan is the one production would get.
"""

import re

import pytest
from django.contrib import admin
from django.db import connection
from django.test import RequestFactory

from users.management.commands.seed_users import seed_users
from users.models import User
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

SEEDED = 20_000


def changelist_plan(term: str) -> str:
    request = RequestFactory().get("/admin/users/user/", {"q": term})
    request.user = UserFactory.create(is_staff=True, is_superuser=True)
    changelist = admin.site.get_model_admin(User).get_changelist_instance(request)
    page = changelist.queryset.using("default")[: changelist.list_per_page]
    return page.explain()


@pytest.fixture
def seeded(services: dict[str, str]) -> None:
    # seed_users ends with ANALYZE, which sees this transaction's own rows.
    seed_users(count=SEEDED, seed=7)
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = 'users_user'")
        assert cursor.fetchone()[0] >= SEEDED


def indexes_used(plan: str) -> set[str]:
    return set(re.findall(r"Index Scan (?:on|using) (\S+)", plan))


def email_indexes() -> set[str]:
    """The unique index and Django's `varchar_pattern_ops` one: with the C collation of the
    test cluster either serves a prefix; with other collations only the latter can."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'users_user' "
            "AND indexdef ~ '\\(email( varchar_pattern_ops)?\\)'"
        )
        names = {row[0] for row in cursor.fetchall()}
    assert len(names) == 2, names
    return names


def test_email_prefix_search_uses_an_email_index(seeded: None) -> None:
    plan = changelist_plan("Ada.Abbott1")

    assert indexes_used(plan) & email_indexes(), plan
    assert "Seq Scan" not in plan, plan


def test_email_search_with_at_sign_uses_an_email_index_only(seeded: None) -> None:
    plan = changelist_plan("ada.abbott1@")

    assert indexes_used(plan), plan
    assert indexes_used(plan) <= email_indexes(), plan
    assert "Seq Scan" not in plan, plan


def test_name_prefix_search_uses_the_lower_display_name_index(seeded: None) -> None:
    plan = changelist_plan("zoe zh")

    assert "user_display_name_lower_like_idx" in indexes_used(plan), plan
    assert indexes_used(plan) & email_indexes(), plan
    assert "Seq Scan" not in plan, plan
