"""users.selectors: reads of users."""

import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from users import selectors
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


class TestUserGet:
    def test_users_see_themselves_as_authenticated_with_no_query(
        self, django_assert_num_queries
    ) -> None:
        user = UserFactory.create()
        with django_assert_num_queries(0):
            assert selectors.user_get(user_id=user.pk, viewer=user) is user

    def test_users_do_not_see_others_and_no_query_is_made(self, django_assert_num_queries) -> None:
        user, other = UserFactory.create(), UserFactory.create()
        with django_assert_num_queries(0):
            assert selectors.user_get(user_id=other.pk, viewer=user) is None

    def test_staff_see_anyone_and_absent_ids_are_none(self) -> None:
        staff, other = UserFactory.create(is_staff=True), UserFactory.create()
        assert selectors.user_get(user_id=other.pk, viewer=staff) == other
        assert selectors.user_get(user_id=uuid.uuid4(), viewer=staff) is None


class TestUserList:
    def test_orders_by_join_date_then_id(self) -> None:
        now = timezone.now()
        late = UserFactory.create(date_joined=now)
        early = UserFactory.create(date_joined=now - timedelta(days=1))
        tied = sorted([UserFactory.create(date_joined=now), late], key=lambda u: u.pk)

        assert list(selectors.user_list()) == [early, *tied]
        # Parameters that are not filters (the pagination's) change nothing.
        assert list(selectors.user_list(filters={"page_size": "2"})) == [early, *tied]

    def test_filters(self) -> None:
        now = timezone.now()
        old = UserFactory.create(email="old@example.com", date_joined=now - timedelta(days=10))
        inactive = UserFactory.create(is_active=False, date_joined=now - timedelta(days=5))
        new = UserFactory.create(date_joined=now)

        assert list(selectors.user_list(filters={"email": "OLD@example.com"})) == [old]
        assert list(selectors.user_list(filters={"is_active": "false"})) == [inactive]
        assert set(selectors.user_list(filters={"is_active": "true"})) == {old, new}
        after = (now - timedelta(days=6)).isoformat()
        before = (now - timedelta(days=1)).isoformat()
        assert list(selectors.user_list(filters={"joined_after": after})) == [inactive, new]
        assert list(selectors.user_list(filters={"joined_before": before})) == [old, inactive]

    @pytest.mark.parametrize(
        "filters",
        [{"is_active": "maybe"}, {"joined_after": "yesterday"}, {"joined_before": "2026-13-01"}],
    )
    def test_invalid_filter_values_name_the_filter(self, filters: dict[str, str]) -> None:
        with pytest.raises(ValidationError) as error:
            selectors.user_list(filters=filters)
        assert set(error.value.message_dict) == set(filters)


class TestUserSearch:
    def test_email_prefix_and_exact_ignoring_case(self) -> None:
        needle = UserFactory.create(email="needle.person@example.com", display_name="")
        UserFactory.create(email="other@example.com", display_name="")

        assert list(selectors.user_search(term="  NEEDLE.P ")) == [needle]
        assert list(selectors.user_search(term="Needle.Person@Example.com")) == [needle]

    def test_display_name_prefix_ignoring_case(self) -> None:
        ann = UserFactory.create(display_name="Ann Lovelace")
        UserFactory.create(display_name="Bob Annan")

        assert list(selectors.user_search(term="ann lo")) == [ann]
        # Prefixes only: the middle of a name would need a full scan.
        assert list(selectors.user_search(term="lovelace")) == []

    def test_a_term_with_at_sign_matches_emails_only(self) -> None:
        UserFactory.create(email="x@example.com", display_name="ann@home")
        assert list(selectors.user_search(term="ann@")) == []

    def test_like_wildcards_are_literal(self) -> None:
        UserFactory.create(email="abc@example.com", display_name="abc")
        assert list(selectors.user_search(term="a%c")) == []
        assert list(selectors.user_search(term="a_c")) == []

    def test_an_id_finds_its_user_and_an_empty_term_everyone(self) -> None:
        user, other = UserFactory.create(), UserFactory.create()
        assert list(selectors.user_search(term=str(user.pk).upper())) == [user]
        assert set(selectors.user_search(term="  ")) == {user, other}
