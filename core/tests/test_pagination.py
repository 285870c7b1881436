"""core.http.pagination: the admin paginator estimates large unfiltered tables."""

import pytest
from django.db import connection

from core.http import pagination
from users.models import User
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_filtered_querysets_are_counted_exactly() -> None:
    UserFactory.create_batch(3, is_active=False)
    UserFactory.create()
    paginator = pagination.EstimatedCountPaginator(User.objects.filter(is_active=False), 2)
    assert paginator.count == 3


def test_small_tables_are_counted_exactly() -> None:
    UserFactory.create_batch(3)
    assert pagination.EstimatedCountPaginator(User.objects.all(), 2).count == 3


def test_large_unfiltered_table_uses_the_planner_estimate(
    services, monkeypatch, django_assert_num_queries
) -> None:
    UserFactory.create_batch(30)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE users_user")
    monkeypatch.setattr(pagination, "EXACT_COUNT_LIMIT", 10)

    paginator = pagination.EstimatedCountPaginator(User.objects.all(), 10)
    with django_assert_num_queries(1) as captured:
        count = paginator.count

    assert "reltuples" in captured.captured_queries[0]["sql"]
    assert "COUNT" not in captured.captured_queries[0]["sql"].upper()
    assert count == 30
