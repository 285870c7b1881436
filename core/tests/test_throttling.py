"""core.http.throttling: fixed-window counters in the real Redis of `make test`, in the
process-local fallback while Redis is down, and in a plain local cache (`make run`)."""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches
from django.utils.module_loading import import_string
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory
from rest_framework.throttling import BaseThrottle

from core.cache.backend import count_in_window
from core.http.throttling import AnonRateThrottle, FixedWindowRateThrottle, UserRateThrottle
from users.api.throttles import LoginIPThrottle, SignUpThrottle
from users.models import User

pytestmark = pytest.mark.django_db(transaction=True)

ClientFor = Callable[[User], APIClient]


def anonymous_request() -> Request:
    return Request(APIRequestFactory().get("/api/v1/users/", REMOTE_ADDR="192.0.2.7"))


class Clock:
    """The throttle's timer (DRF reads time through `throttle.timer`)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_user_limit_then_429_with_retry_after(
    services: dict[str, str], user: User, client_for: ClientFor, throttle_rates: Any
) -> None:
    throttle_rates(user="3/minute")
    client = client_for(user)
    statuses = [client.get("/api/v1/users/me/").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = client.get("/api/v1/users/me/")
    assert refused.json()["error"]["code"] == "throttled"
    assert 1 <= int(refused["Retry-After"]) <= 60


def test_counts_are_shared_across_processes_in_redis(
    services: dict[str, str], throttle_rates: Any
) -> None:
    throttle_rates(anon="2/minute")
    clock = Clock(600.0)
    # Two throttle objects, as two workers would have: one counter in Redis.
    first, second = AnonRateThrottle(), AnonRateThrottle()
    first.timer = second.timer = clock
    assert first.allow_request(anonymous_request(), None)  # type: ignore[arg-type]
    assert second.allow_request(anonymous_request(), None)  # type: ignore[arg-type]
    assert not first.allow_request(anonymous_request(), None)  # type: ignore[arg-type]
    assert first.wait() == 60.0
    clock.now = 630.0
    assert not second.allow_request(anonymous_request(), None)  # type: ignore[arg-type]
    assert second.wait() == 30.0


def test_a_new_window_starts_a_new_count(services: dict[str, str], throttle_rates: Any) -> None:
    throttle_rates(anon="1/minute")
    clock = Clock(659.0)
    throttle = AnonRateThrottle()
    throttle.timer = clock
    assert throttle.allow_request(anonymous_request(), None)  # type: ignore[arg-type]
    assert not throttle.allow_request(anonymous_request(), None)  # type: ignore[arg-type]
    clock.now = 660.0
    assert throttle.allow_request(anonymous_request(), None)  # type: ignore[arg-type]


def test_limits_hold_with_redis_down(
    redis_down: None, user: User, client_for: ClientFor, throttle_rates: Any
) -> None:
    throttle_rates(user="2/minute")
    client = client_for(user)
    statuses = [client.get("/api/v1/users/me/").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_count_in_a_local_cache(settings: Any) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    assert [count_in_window("k", seconds=60, alias="local") for _ in range(3)] == [1, 2, 3]
    caches["local"].clear()


def test_each_user_has_a_counter(services: dict[str, str], throttle_rates: Any) -> None:
    throttle_rates(user="1/minute")
    alice, bob = User(email="alice@example.com"), User(email="bob@example.com")
    throttle = UserRateThrottle()
    for person in (alice, bob):
        request = anonymous_request()
        request.user = person
        assert throttle.allow_request(request, None)  # type: ignore[arg-type]


def every_throttle_class(base: type[BaseThrottle] = BaseThrottle) -> Iterator[type]:
    """Every throttle class defined in the project's apps, however deeply derived."""
    for subclass in base.__subclasses__():
        if subclass.__module__.split(".")[0] in {"config", "core", "events", "users"}:
            yield subclass
        yield from every_throttle_class(subclass)


def test_every_rate_limit_counts_in_fixed_windows() -> None:
    # One algorithm for every limit: DRF's sliding log would creep back with any throttle
    # that subclasses SimpleRateThrottle directly.
    defaults = [import_string(path) for path in settings.REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"]]
    found = {*every_throttle_class(), *defaults}

    assert {LoginIPThrottle, SignUpThrottle, AnonRateThrottle, UserRateThrottle} <= found
    for throttle in found:
        assert issubclass(throttle, FixedWindowRateThrottle), throttle
