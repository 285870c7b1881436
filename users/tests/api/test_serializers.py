"""users.api.serializers.UserSerializer: its one-step representation is exactly what DRF's
field-by-field ModelSerializer renders for the same fields."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from rest_framework import serializers

from users.api.serializers import UserSerializer
from users.models import User
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


class FieldByFieldSerializer(serializers.ModelSerializer[User]):
    class Meta:
        model = User
        fields = UserSerializer.Meta.fields


@pytest.mark.parametrize(
    "joined",
    [
        datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC),
        datetime(2024, 6, 1, 2, 30, 0, 5, tzinfo=timezone(timedelta(hours=2))),
    ],
)
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
