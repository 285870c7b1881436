"""users.api.cached_detail: the cached answer is the viewset's answer, and everything it
cannot vouch for reaches the viewset (real PostgreSQL and Redis of `make test`)."""

from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import cache
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from users import services as user_services
from users.models import User
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

ClientFor = Callable[[User], APIClient]


def url(user: User) -> str:
    return f"/api/v1/users/{user.pk}/"


def answers(by: str) -> float:
    labels = {"by": by}
    return REGISTRY.get_sample_value("userservice_user_detail_answers_total", labels) or 0.0


def answer(response: Any) -> tuple[int, bytes, dict[str, str]]:
    names = ("Content-Type", "Vary", "Allow")
    return response.status_code, response.content, {name: response[name] for name in names}


def test_cached_answer_equals_the_viewsets(
    services: dict[str, str], user: User, client_for: ClientFor
) -> None:
    client = client_for(user)
    by_cache, by_viewset = answers("cache"), answers("viewset")
    cold = client.get(url(user))
    warm = client.get(url(user), HTTP_ACCEPT="application/json")
    assert answers("cache") == by_cache + 2
    # A query string always goes to the viewset.
    viewset = client.get(url(user), {"format": "json"})
    assert answers("viewset") == by_viewset + 1
    assert answer(cold) == answer(warm) == answer(viewset)
    assert warm.json()["email"] == user.email


def test_staff_read_another_user_from_the_cache(
    services: dict[str, str], staff: User, user: User, client_for: ClientFor
) -> None:
    client = client_for(staff)
    assert client.get(url(user)).json()["id"] == str(user.pk)
    assert client.get(url(user)).json()["id"] == str(user.pk)


def test_what_the_cache_cannot_vouch_for_gets_the_viewsets_errors(
    services: dict[str, str], user: User, client_for: ClientFor
) -> None:
    other = UserFactory.create()
    client = client_for(user)
    client.get(url(user))  # warm
    by_viewset = answers("viewset")
    assert client.get(url(other)).json()["error"]["code"] == "not_found"
    assert APIClient().get(url(user)).status_code == 401
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer " + "0" * 64)
    assert bad.get(url(user)).json()["error"]["code"] == "authentication_failed"
    html = client.get(url(user), HTTP_ACCEPT="text/html")
    assert html.status_code == 200
    assert html["Content-Type"].startswith("text/html")
    assert answers("viewset") == by_viewset + 4


def test_a_change_is_served_at_once(
    services: dict[str, str], user: User, client_for: ClientFor
) -> None:
    client = client_for(user)
    client.get(url(user))
    user_services.user_update(user=user, data={"display_name": "Renamed"})
    assert client.get(url(user)).json()["display_name"] == "Renamed"
    user_services.user_deactivate(user=user)
    assert client.get(url(user)).status_code == 401


def test_throttled_and_counted_once_per_request(
    services: dict[str, str], user: User, client_for: ClientFor, throttle_rates: Any
) -> None:
    throttle_rates(user="3/minute")
    other = UserFactory.create()
    client = client_for(user)
    # A refused id is counted by the viewset alone, not by the cached answer too.
    statuses = [client.get(path).status_code for path in (url(user), url(other), url(user))]
    assert statuses == [200, 404, 200]
    refused = client.get(url(user))
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    cache.clear()
