"""Fixtures shared by every app's tests."""

import os
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, cast

import pytest
from django.core.cache import cache
from knox.models import AuthToken
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from users.models import User
from users.tests.factories import UserFactory

# What `make test` starts (scripts/services.sh) and exports; the suite alone runs on SQLite.
SERVICE_VARIABLES = ("DATABASE_URL", "DATABASE_REPLICA_URLS", "REDIS_URL")
NEEDS_SERVICES = "needs the PostgreSQL primary + replica and Redis: run `make test`"


def unavailable(reason: str) -> NoReturn:
    """Skip the calling test for want of `reason`'s service or tool, or fail it under
    `make test` (REQUIRE_SERVICES=1): CI runs every test there, so something missing is
    a broken harness, never a reason to run less.

    `reason` says what is needed and how to get it, the same words for every test that
    needs the same thing: the run's summary groups skips by it.
    """
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def services_missing() -> list[str]:
    """The service variables of `make test` that are unset (empty counts as unset)."""
    return [name for name in SERVICE_VARIABLES if not os.environ.get(name)]


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    """Throttle counters live in the cache; each test starts with none."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _relay_in_the_committing_thread(settings: Any) -> None:
    """Each event is published by the code that committed it, not by a relay thread.

    A test's rows live in a transaction that is never committed, which the relay thread's
    own connection could not see. The relay thread's tests (events/tests/test_relay.py)
    turn it back on.
    """
    settings.EVENTS_RELAY_LINGER_SECONDS = 0


@pytest.fixture
def throttle_rates(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Override throttle rates by scope for one test (DRF reads them once, at import)."""

    def override(**rates: str) -> None:
        merged = {**SimpleRateThrottle.THROTTLE_RATES, **rates}
        monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", merged)

    return override


@pytest.fixture
def redis_down(settings: Any) -> Iterator[None]:
    """The cache layer pointed at a closed port, with short timeouts, breaker reset after."""
    from core.cache.backend import redis_guard

    settings.CACHES = {
        "default": {
            "BACKEND": "core.cache.backend.ResilientRedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_TIMEOUT": 0.1, "SOCKET_CONNECT_TIMEOUT": 0.1},
        }
    }
    yield
    # Its fallback counters are process-local and named after the closed port, so they
    # would outlive the test and lock out the next test that uses this fixture.
    cache.clear()
    redis_guard.reset()


@pytest.fixture
def eager_celery() -> Iterator[None]:
    """Run tasks in-process for this test, as `make run` does (no broker needed)."""
    from config.celery import app as celery_app

    # The namespaced key: configured from Django's settings, Celery reads that one first.
    previous = celery_app.conf.CELERY_TASK_ALWAYS_EAGER
    celery_app.conf.CELERY_TASK_ALWAYS_EAGER = True
    yield
    celery_app.conf.CELERY_TASK_ALWAYS_EAGER = previous


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
    if services_missing():
        unavailable(NEEDS_SERVICES)
    return {name: os.environ[name] for name in SERVICE_VARIABLES}


class RabbitMQ:
    """The disposable RabbitMQ of `make test-rabbitmq`: its URL and its rabbitmqctl."""

    def __init__(self, url: str) -> None:
        self.url = url

    def ctl(self, *args: str) -> str:
        """Run rabbitmqctl against this node (scripts/services.sh knows its name and cookie)."""
        script = Path(__file__).resolve().parent / "scripts" / "services.sh"
        completed = subprocess.run(  # noqa: S603 (our script, arguments from the tests)
            ["bash", str(script), "rabbitmqctl", *args],  # noqa: S607 (bash from PATH)
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return completed.stdout


@pytest.fixture
def rabbitmq(services: dict[str, str]) -> RabbitMQ:
    """The broker when it is RabbitMQ (`make test-rabbitmq`); never a skip there."""
    from django.conf import settings

    if not settings.CELERY_BROKER_IS_RABBITMQ:
        unavailable("needs RabbitMQ as the broker: run `make test-rabbitmq`")
    return RabbitMQ(settings.CELERY_BROKER_URL)


def pytest_configure(config: pytest.Config) -> None:
    """Tests render admin pages without running collectstatic first."""
    from django.conf import settings

    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked `services` runs only on the services of `make test`, as one that
    asks for the `services` fixture does."""
    if item.get_closest_marker("services") and services_missing():
        unavailable(NEEDS_SERVICES)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say once what the skipped tests need and how to run them, however many there are.

    Under `make test` a missing service fails its tests instead (`unavailable`), so a skip
    there is one to look into.
    """
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        if isinstance(report.longrepr, tuple):
            reasons[report.longrepr[2].removeprefix("Skipped: ")] += 1
    deselected = terminalreporter.stats.get("deselected", [])
    rabbitmq = sum(1 for item in deselected if item.get_closest_marker("rabbitmq"))
    if not reasons and not rabbitmq:
        return
    terminalreporter.section("not run here, and why")
    for reason, count in reasons.most_common():
        terminalreporter.write_line(f"{count:>5} skipped: {reason}")
    missing = services_missing()
    if missing and NEEDS_SERVICES in reasons:
        terminalreporter.write_line(f"      (unset: {', '.join(missing)}; `-rs` lists the tests)")
    if rabbitmq:
        terminalreporter.write_line(
            f"{rabbitmq:>5} deselected: marked rabbitmq, they run under `make test-rabbitmq`"
        )


@pytest.fixture(scope="session")
def django_db_setup(django_test_environment: None, django_db_blocker: Any) -> Iterator[None]:
    """Create the test database on the primary only; the replicas receive it by streaming.

    Django's test setup would either try to create it on each replica (a read-only
    standby refuses) or, with TEST MIRROR, point the replica aliases at the primary, and
    then no test would ever read from a real replica.
    """
    from django.conf import settings
    from django.db import connections
    from django.test.utils import setup_databases, teardown_databases

    with django_db_blocker.unblock():
        # django-stubs types `aliases` as a Mapping; Django takes any collection of names.
        config = setup_databases(verbosity=0, interactive=False, aliases={"default"})  # type: ignore[arg-type]
        test_name = connections["default"].settings_dict["NAME"]
        for alias in settings.REPLICA_DATABASES:
            connections[alias].settings_dict["NAME"] = test_name
        wait_for_replicas()
    yield
    with django_db_blocker.unblock():
        for alias in settings.REPLICA_DATABASES:
            connections[alias].close()
            cast(Any, connections[alias]).close_pool()
        teardown_databases(config, verbosity=0)


def wait_for_replicas(timeout: float = 30.0) -> None:
    """Block until every replica has replayed all the primary has written so far."""
    import time

    from django.conf import settings
    from django.db import connections

    if not settings.REPLICA_DATABASES:
        return
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_insert_lsn()::text")
        (target,) = cursor.fetchone()
    deadline = time.monotonic() + timeout
    for alias in settings.REPLICA_DATABASES:
        replayed = False
        while not replayed:
            try:
                with connections[alias].cursor() as cursor:
                    cursor.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target])
                    (replayed,) = cursor.fetchone()
            except Exception:
                connections[alias].close()
                if time.monotonic() > deadline:
                    raise
            if not replayed:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{alias} did not catch up with the primary")
                time.sleep(0.05)


@pytest.fixture(autouse=True)
def _routing_follows_the_tests_databases(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with no read pin; only tests that ask for the replicas read them.

    A test that declares only the default database would otherwise have its reads routed
    to a replica it may not use (and that may not have replayed its writes yet).
    """
    from django.conf import settings

    from core.db import router as db_router

    db_router.reset()
    marker = request.node.get_closest_marker("django_db")
    databases = marker.kwargs.get("databases") if marker else None
    wants_replicas = databases == "__all__" or any(
        alias in (databases or ()) for alias in settings.REPLICA_DATABASES
    )
    if wants_replicas:
        yield
        return
    with db_router.use_primary():
        yield
