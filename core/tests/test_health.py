"""core.observability.health: liveness answers without touching any dependency; readiness
checks the real services of `make test`, and each dependency taken away (a refused port, or
a port that accepts and never answers) changes the answer the way the orchestrator needs."""

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from django.test import Client

from core.observability.health import check_database


@pytest.mark.django_db
def test_healthz_answers_without_the_database(django_assert_num_queries) -> None:
    with django_assert_num_queries(0):
        response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.fixture
def refused_port() -> int:
    """A loopback port nothing listens on: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never says a word (a hung server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


@pytest.fixture
def ready_settings(settings, services):
    """Every dependency configured, from the real services; a generous deadline for them."""
    settings.DATABASE_REPLICA_URLS = services["DATABASE_REPLICA_URLS"].split(",")
    settings.REDIS_URL = services["REDIS_URL"]
    settings.CELERY_BROKER_URL = services["REDIS_URL"].rsplit("/", 1)[0] + "/1"
    settings.HEALTH_CHECK_TIMEOUT = 5.0
    return settings


def readyz() -> tuple[int, dict]:
    response = Client().get("/readyz")
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


def assert_ok(checks: dict, *names: str) -> None:
    for name in names:
        assert checks[name]["status"] == "ok", (name, checks[name])
        assert isinstance(checks[name]["latency_ms"], float)


def test_ready_when_every_dependency_answers(ready_settings) -> None:
    status, body = readyz()

    assert status == 200
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "replica_0", "redis", "broker"}
    assert_ok(body["checks"], "database", "replica_0", "redis", "broker")


def test_only_configured_dependencies_are_checked(ready_settings) -> None:
    ready_settings.DATABASE_REPLICA_URLS = []
    ready_settings.REDIS_URL = ""
    ready_settings.CELERY_BROKER_URL = ""

    status, body = readyz()

    assert (status, body["status"], set(body["checks"])) == (200, "ok", {"database"})


def test_not_ready_when_the_primary_is_down(ready_settings, monkeypatch, refused_port) -> None:
    # A copy, so Django's own connection keeps the real primary.
    primary = {**ready_settings.DATABASES["default"], "PORT": str(refused_port)}
    monkeypatch.setitem(ready_settings.DATABASES, "default", primary)

    status, body = readyz()

    assert status == 503
    assert body["error"]["code"] == "not_ready"
    assert "database" in body["error"]["message"]
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["status"] == "down"
    assert body["checks"]["database"]["error"] == "OperationalError"
    assert_ok(body["checks"], "replica_0", "redis", "broker")


def test_not_ready_when_the_primary_hangs(ready_settings, monkeypatch, silent_port) -> None:
    ready_settings.HEALTH_CHECK_TIMEOUT = 0.3
    primary = {**ready_settings.DATABASES["default"], "PORT": str(silent_port)}
    monkeypatch.setitem(ready_settings.DATABASES, "default", primary)

    status, body = readyz()

    # libpq would wait at least 2 s to connect; the check's own deadline cut it short.
    assert status == 503
    assert body["checks"]["database"] == {"status": "down", "latency_ms": 300.0, "error": "timeout"}


def test_degraded_but_ready_when_a_replica_is_down(ready_settings, refused_port) -> None:
    ready_settings.DATABASE_REPLICA_URLS = [
        *ready_settings.DATABASE_REPLICA_URLS,
        f"postgres://postgres@127.0.0.1:{refused_port}/userservice",
    ]

    status, body = readyz()

    assert (status, body["status"]) == (200, "degraded")
    assert body["checks"]["replica_1"]["status"] == "down"
    assert_ok(body["checks"], "database", "replica_0", "redis", "broker")


def test_degraded_but_ready_when_redis_is_down(ready_settings, refused_port) -> None:
    ready_settings.REDIS_URL = f"redis://127.0.0.1:{refused_port}/0"

    status, body = readyz()

    assert (status, body["status"]) == (200, "degraded")
    assert body["checks"]["redis"]["status"] == "down"
    assert body["checks"]["redis"]["error"] == "ConnectionError"
    assert_ok(body["checks"], "database", "replica_0", "broker")


def test_degraded_but_ready_when_redis_hangs(ready_settings, silent_port) -> None:
    ready_settings.HEALTH_CHECK_TIMEOUT = 0.3
    ready_settings.REDIS_URL = f"redis://127.0.0.1:{silent_port}/0"

    status, body = readyz()

    assert (status, body["status"]) == (200, "degraded")
    assert body["checks"]["redis"]["status"] == "down"
    assert_ok(body["checks"], "database", "replica_0", "broker")


def test_degraded_but_ready_when_the_broker_is_down(ready_settings, refused_port) -> None:
    ready_settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{refused_port}/1"

    status, body = readyz()

    assert (status, body["status"]) == (200, "degraded")
    assert body["checks"]["broker"]["status"] == "down"
    assert_ok(body["checks"], "database", "replica_0", "redis")


def test_error_messages_never_leak_connection_details(ready_settings, refused_port) -> None:
    ready_settings.REDIS_URL = f"redis://:s3cret-password@127.0.0.1:{refused_port}/0"

    response = Client().get("/readyz")

    assert b"s3cret-password" not in response.content
    assert str(refused_port).encode() not in response.content


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_endpoints_only_answer_get(path) -> None:
    response = Client().post(path)

    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_sqlite_database_check(tmp_path) -> None:
    check_database({"ENGINE": "django.db.backends.sqlite3", "NAME": tmp_path / "x.db"}, 1.0)

    with pytest.raises(ValueError, match="no readiness check"):
        check_database({"ENGINE": "django.db.backends.mysql", "NAME": "x"}, 1.0)


@pytest.mark.parametrize(
    "client_kwargs",
    [{"REMOTE_ADDR": "203.0.113.9"}, {"HTTP_X_FORWARDED_FOR": "203.0.113.9"}],
    ids=["remote", "proxied"],
)
def test_readiness_details_are_for_operators_only(
    ready_settings, monkeypatch, refused_port, client_kwargs
) -> None:
    assert Client().get("/readyz", **client_kwargs).json() == {"status": "ok"}
    primary = {**ready_settings.DATABASES["default"], "PORT": str(refused_port)}
    monkeypatch.setitem(ready_settings.DATABASES, "default", primary)
    response = Client().get("/readyz", **client_kwargs)
    assert response.status_code == 503
    body = response.json()
    assert "checks" not in body
    assert "database" not in body["error"]["message"]


def test_readiness_details_for_the_metrics_token(ready_settings) -> None:
    ready_settings.METRICS_TOKEN = "operators-" + "k" * 30
    anonymous = Client().get("/readyz")
    assert "checks" not in anonymous.json()
    operator = Client().get("/readyz", HTTP_AUTHORIZATION=f"Bearer {ready_settings.METRICS_TOKEN}")
    assert set(operator.json()["checks"]) >= {"database", "redis"}


@pytest.mark.rabbitmq
def test_ready_with_rabbitmq_as_the_broker(ready_settings, rabbitmq) -> None:
    ready_settings.CELERY_BROKER_URL = rabbitmq.url
    status, body = readyz()
    assert status == 200
    assert_ok(body["checks"], "broker")


@pytest.mark.rabbitmq
def test_degraded_when_rabbitmq_refuses_the_login(ready_settings, rabbitmq) -> None:
    # The AMQP handshake is part of the probe: an open port alone is not a broker.
    parts = urlsplit(rabbitmq.url)
    ready_settings.CELERY_BROKER_URL = parts._replace(
        netloc=f"{parts.username}:wrong@{parts.hostname}:{parts.port}"
    ).geturl()
    status, body = readyz()
    assert status == 200
    assert body["status"] == "degraded"
    assert body["checks"]["broker"]["status"] == "down"


def test_degraded_when_rabbitmq_hangs(ready_settings, silent_port) -> None:
    ready_settings.CELERY_BROKER_URL = f"amqp://user:password@127.0.0.1:{silent_port}//"
    ready_settings.HEALTH_CHECK_TIMEOUT = 0.5
    status, body = readyz()
    assert status == 200
    assert body["checks"]["broker"]["status"] == "down"
