"""Fixtures shared by every app's tests."""

import os
from collections.abc import Callable, Iterator

import pytest
from django.core.cache import cache
from knox.models import AuthToken
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from users.models import User
from users.tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    """Throttle counters live in the cache; each test starts with none."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def throttle_rates(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Override throttle rates by scope for one test (DRF reads them once, at import)."""

    def override(**rates: str) -> None:
        merged = {**SimpleRateThrottle.THROTTLE_RATES, **rates}
        monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", merged)

    return override


@pytest.fixture
def api_client() -> APIClient:
    """An anonymous API client."""
    return APIClient()


@pytest.fixture
def user(db: None) -> User:
    """A regular, active user."""
    return UserFactory.create()


@pytest.fixture
def staff(db: None) -> User:
    """A staff user (not a superuser)."""
    return UserFactory.create(is_staff=True)


@pytest.fixture
def client_for() -> Callable[[User], APIClient]:
    """Build an API client that authenticates as the given user with a real token."""

    def make(user: User) -> APIClient:
        _, secret = AuthToken.objects.create(user=user)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return client

    return make


@pytest.fixture
def services() -> dict[str, str]:
    """The disposable services' settings; a test that needs them cannot run on SQLite.

    Under `make test` (REQUIRE_SERVICES=1) a missing service is a failure, never a skip.
    """
    names = ("DATABASE_URL", "DATABASE_REPLICA_URLS", "REDIS_URL")
    found = {name: os.environ.get(name, "") for name in names}
    missing = [name for name, value in found.items() if not value]
    if missing:
        message = f"needs the services of `make test`: {', '.join(missing)} unset"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


def pytest_configure(config: pytest.Config) -> None:
    """Tests render admin pages without running collectstatic first."""
    from django.conf import settings

    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
