"""users.api.serializers.UserSerializer: its one-step representation, and the list's
rendering of rows (users.cache.user_row_representation), are exactly what DRF's
field-by-field ModelSerializer renders for the same fields."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from rest_framework import serializers
from rest_framework.test import APIClient

from users import selectors
from users.api.serializers import UserSerializer
from users.cache import user_row_representation
from users.models import User
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


class FieldByFieldSerializer(serializers.ModelSerializer[User]):
    class Meta:
        model = User
        fields = UserSerializer.Meta.fields


JOINED = [
    datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC),
    datetime(2024, 6, 1, 2, 30, 0, 5, tzinfo=timezone(timedelta(hours=2))),
]


@pytest.fixture
def staff_client() -> APIClient:
    client = APIClient()
    client.force_authenticate(UserFactory.create(is_staff=True))
    return client


@pytest.mark.parametrize("joined", JOINED)
def test_the_representation_is_drfs(joined: datetime) -> None:
    user = UserFactory.create(display_name="Zoë  Ω", is_staff=True, date_joined=joined)
    user.refresh_from_db()
    for instance in (user, User.objects.get(pk=user.pk)):
        assert UserSerializer(instance).data == FieldByFieldSerializer(instance).data


def test_a_list_is_the_same_as_drfs() -> None:
    users = UserFactory.create_batch(5, is_active=False)
    expected = FieldByFieldSerializer(users, many=True).data
    assert UserSerializer(users, many=True).data == expected
    assert list(expected[0]) == list(UserSerializer(users[0]).data) == UserSerializer.Meta.fields


def test_the_lists_rows_render_as_drf_renders_their_users() -> None:
    for joined in JOINED:
        UserFactory.create(display_name="Zoë  Ω", is_staff=True, date_joined=joined)
    UserFactory.create_batch(3, is_active=False)
    expected = FieldByFieldSerializer(selectors.user_list(), many=True).data
    rows = [user_row_representation(row) for row in selectors.user_list_rows()]
    assert rows == expected
    assert [list(row) for row in rows] == [UserSerializer.Meta.fields] * len(rows)


def test_a_page_of_the_list_is_drfs_rendering(staff_client: APIClient) -> None:
    UserFactory.create_batch(4)
    page = staff_client.get("/api/v1/users/?page_size=3").json()
    expected = FieldByFieldSerializer(selectors.user_list()[:3], many=True).data
    assert page["results"] == expected
