"""users.api.views: UserViewSet's declarations of who may read and how often hold on every
path of a read, the one answered from the caches without a query included (real
PostgreSQL and Redis of `make test`)."""

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.test import APIClient
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from core.http.throttling import UserRateThrottle
from users.api.views import UserViewSet
from users.models import User

# Caches are filled only outside transactions, so these tests commit.
pytestmark = pytest.mark.django_db(transaction=True)

ClientFor = Callable[[User], APIClient]


def url(user: User) -> str:
    return f"/api/v1/users/{user.pk}/"


class NoReadsOnFridays(BasePermission):
    """A rule a later change might add: here it refuses every read of a user."""

    message = "Not today."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return getattr(view, "action", None) != "retrieve"


class TwoReadsAMinute(UserRateThrottle):
    """A tighter limit a later change might add."""

    scope = "two_reads"
    rate = "2/minute"


def warm(client: APIClient, user: User, django_assert_num_queries: Any) -> None:
    """Read until the answer comes from the caches alone (no query)."""
    client.get(url(user))
    with django_assert_num_queries(0):
        assert client.get(url(user)).status_code == 200


def test_a_permission_added_to_the_viewset_refuses_the_cached_read(
    services: dict[str, str],
    user: User,
    client_for: ClientFor,
    monkeypatch: pytest.MonkeyPatch,
    django_assert_num_queries: Any,
) -> None:
    client = client_for(user)
    warm(client, user, django_assert_num_queries)
    declared = UserViewSet.get_permissions

    def with_rule(self: UserViewSet) -> list[BasePermission]:
        return [*declared(self), NoReadsOnFridays()]

    monkeypatch.setattr(UserViewSet, "get_permissions", with_rule)
    with django_assert_num_queries(0):
        refused = client.get(url(user))
    assert refused.status_code == 403
    assert refused.json()["error"] == {"code": "permission_denied", "message": "Not today."}


def test_a_throttle_added_to_the_viewset_limits_the_cached_read(
    services: dict[str, str],
    user: User,
    client_for: ClientFor,
    monkeypatch: pytest.MonkeyPatch,
    django_assert_num_queries: Any,
) -> None:
    client = client_for(user)
    warm(client, user, django_assert_num_queries)
    declared = UserViewSet.get_throttles

    def with_limit(self: UserViewSet) -> list[BaseThrottle]:
        return [*declared(self), TwoReadsAMinute()]

    monkeypatch.setattr(UserViewSet, "get_throttles", with_limit)
    with django_assert_num_queries(0):
        statuses = [client.get(url(user)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
