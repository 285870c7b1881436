"""core.db.router against the real streaming replica of `make test`: where reads go, and
what happens when the replica lags or dies."""

import contextlib
import threading
import uuid
from collections.abc import Iterator
from typing import Any, cast

import psycopg
import pytest
from django.core.cache import cache
from django.db import connections
from knox.models import AuthToken
from prometheus_client import REGISTRY
from psycopg_pool import PoolTimeout
from rest_framework.test import APIClient

from conftest import wait_for_replicas
from core.cache.backend import shared_redis
from core.db import router as db_router
from core.db.postgres import probe_conninfo
from core.tests import replica_control as replica
from users.cache import user_cache
from users.models import User
from users.tests.factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True, databases="__all__")]

STRONG = "violet-harbour-lantern-42"


@pytest.fixture
def routed(services, settings) -> Iterator[None]:
    """A caught-up, admitted replica and a context with no pin, as a new client has."""
    settings.REPLICA_MAX_LAG_SECONDS = 0.5
    wait_for_replicas()
    replica.wait_until(_replica_admitted, what="the replica to be admitted")
    db_router.reset()
    yield
    if _replica_is_up():
        replica.resume_replay()


def _replica_admitted() -> bool:
    db_router.monitor.check_now()
    return replica.REPLICA in db_router.monitor.readable()


def _replica_excluded() -> bool:
    db_router.monitor.check_now()
    return replica.REPLICA not in db_router.monitor.readable()


def _replica_is_up() -> bool:
    try:
        replica.replica_sql("SELECT 1")
    except psycopg.Error:
        return False
    return True


def token_client(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=bearer(user))
    return client


def bearer(user: User) -> str:
    _, secret = AuthToken.objects.create(user=user)
    return f"Bearer {secret}"


def settle() -> None:
    """Let the replica receive what the test set up, then forget the setup's pin."""
    wait_for_replicas()
    db_router.reset()


def forget_cached_users() -> None:
    """Empty both cache layers, so the next read of a user goes to a database.

    The user cache would otherwise answer, and these tests are about where the
    database reads go. Version stamps go too: what a read without them does is the point.
    """
    cache.clear()
    user_cache.clear_local()


def test_reads_without_a_recent_write_use_the_replica(routed) -> None:
    staff, other = UserFactory.create(is_staff=True), UserFactory.create()
    client = token_client(staff)
    settle()
    forget_cached_users()
    before = replica.executed_on(replica.REPLICA)

    response = client.get(f"/api/v1/users/{other.pk}/")

    assert response.status_code == 200
    assert replica.executed_on(replica.REPLICA) > before
    assert db_router.PIN_HEADER not in response


def test_routing_decisions() -> None:
    router = db_router.ReplicaRouter()
    assert router.allow_migrate("default", "users")
    assert not router.allow_migrate(replica.REPLICA, "users")
    db_router.reset()
    with db_router.use_primary():
        assert router.db_for_read(User) == "default"
    assert router.db_for_write(User) == "default"
    assert db_router.wrote()
    assert router.db_for_read(User) == "default", "a write pins later reads"


def test_sessions_are_always_read_from_the_primary(routed) -> None:
    from django.contrib.sessions.models import Session

    assert db_router.ReplicaRouter().db_for_read(Session) == "default"
    assert db_router.ReplicaRouter().db_for_read(User) == replica.REPLICA


def test_sign_up_then_read_sees_the_write_while_the_replica_is_paused(routed) -> None:
    staff = UserFactory.create(is_staff=True)
    staff_client = token_client(staff)
    settle()
    db_router.monitor.check_now()
    replica.pause_replay()

    client = APIClient()
    created = client.post(
        "/api/v1/users/", {"email": "fresh@example.com", "password": STRONG}, format="json"
    )
    assert created.status_code == 201
    assert created[db_router.PIN_HEADER]
    user_id = created.json()["id"]
    token = client.post(
        "/api/v1/auth/token/", {"email": "fresh@example.com", "password": STRONG}, format="json"
    ).json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    # The new client reads its own write at once, though the replica has not replayed it.
    forget_cached_users()
    mine = client.get(f"/api/v1/users/{user_id}/")
    assert mine.status_code == 200
    assert mine.json()["email"] == "fresh@example.com"
    assert replica.replica_sql("SELECT count(*) FROM users_user WHERE id = %s", (user_id,)) == 0

    # Another client, with no pin, is served by the lagging replica until the lag passes the
    # limit: proof that the replica really is stale, so the read above needed the pin.
    db_router.reset()
    db_router.monitor.check_now()
    if replica.REPLICA in db_router.monitor.readable():
        forget_cached_users()
        assert staff_client.get(f"/api/v1/users/{user_id}/").status_code == 404
    replica.wait_until(_replica_excluded, what="the lagging replica to be excluded")
    db_router.reset()
    forget_cached_users()
    other = staff_client.get(f"/api/v1/users/{user_id}/")
    assert other.status_code == 200

    replica.resume_replay()
    replica.wait_until(_replica_admitted, what="the replica to catch up and be readmitted")
    db_router.reset()
    forget_cached_users()
    before = replica.executed_on(replica.REPLICA)
    assert staff_client.get(f"/api/v1/users/{user_id}/").status_code == 200
    assert replica.executed_on(replica.REPLICA) > before


def test_pin_travels_in_the_header_for_clients_without_cookies(routed) -> None:
    staff, other = UserFactory.create(is_staff=True), UserFactory.create()
    credentials = bearer(staff)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=credentials)
    settle()

    changed = client.patch(f"/api/v1/users/{other.pk}/", {"display_name": "New"}, format="json")
    pin = changed[db_router.PIN_HEADER]
    assert db_router.read_client_pin(pin) > 0
    assert db_router.read_client_pin(pin + "forged") == 0
    assert db_router.read_client_pin("nonsense") == 0

    cookieless = APIClient()
    cookieless.credentials(HTTP_AUTHORIZATION=credentials)
    user_cache.clear_local()
    before = replica.executed_on(replica.REPLICA)
    response = cookieless.get(f"/api/v1/users/{other.pk}/", HTTP_X_PRIMARY_PIN=pin)
    assert response.json()["display_name"] == "New"
    assert replica.executed_on(replica.REPLICA) == before

    # Control: without the pin (and with the user pin gone) the same read uses the replica.
    wait_for_replicas()
    forget_cached_users()
    db_router.reset()
    assert cookieless.get(f"/api/v1/users/{other.pk}/").status_code == 200
    assert replica.executed_on(replica.REPLICA) > before


def test_user_pin_covers_clients_that_echo_nothing(routed) -> None:
    staff, other = UserFactory.create(is_staff=True), UserFactory.create()
    writer, reader = token_client(staff), token_client(staff)
    settle()

    writer.patch(f"/api/v1/users/{other.pk}/", {"display_name": "Elsewhere"}, format="json")
    db_router.reset()
    # The write emptied the cached entry; the user pin lives in Redis and stays.
    user_cache.clear_local()
    before = replica.executed_on(replica.REPLICA)
    assert reader.get(f"/api/v1/users/{other.pk}/").json()["display_name"] == "Elsewhere"
    assert replica.executed_on(replica.REPLICA) == before


def test_dead_replica_reads_fall_back_to_the_primary_and_return(routed) -> None:
    staff, other = UserFactory.create(is_staff=True), UserFactory.create()
    client = token_client(staff)
    settle()
    target = f"/api/v1/users/{other.pk}/"
    try:
        replica.stop_replica()
        # The first read finds the replica dead, is retried on the primary and answers 200.
        forget_cached_users()
        assert client.get(target).status_code == 200
        assert replica.REPLICA not in db_router.monitor.readable()
        # Later reads never try the dead replica at all.
        before = replica.executed_on(replica.REPLICA)
        for _ in range(5):
            db_router.reset()
            forget_cached_users()
            assert client.get(target).status_code == 200
        assert replica.executed_on(replica.REPLICA) == before
        assert replica.REPLICA not in db_router.monitor.readable()
    finally:
        replica.start_replica()
    replica.wait_until(_replica_admitted, what="the restarted replica to be readmitted")
    db_router.reset()
    forget_cached_users()
    before = replica.executed_on(replica.REPLICA)
    assert client.get(target).status_code == 200
    assert replica.executed_on(replica.REPLICA) > before


def test_concurrent_requests_share_the_pool(routed) -> None:
    pool_max = connections["default"].settings_dict["OPTIONS"]["pool"]["max_size"]
    test_db = connections["default"].settings_dict["NAME"]
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        with psycopg.connect(replica.conninfo("default"), autocommit=True) as conn:
            while not stop.is_set():
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = %s AND application_name = 'userservice'",
                    [test_db],
                ).fetchone()
                peak = max(peak, row[0] if row else 0)

    def request() -> None:
        with db_router.use_primary(), connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.2)")
        connections["default"].close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    workers = [threading.Thread(target=request) for _ in range(3 * pool_max)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    stop.set()
    watcher.join(timeout=10)

    assert not any(worker.is_alive() for worker in workers)
    assert 2 <= peak <= pool_max


def test_a_pooled_connection_the_server_dropped_is_never_handed_out(services) -> None:
    """A restarted primary leaves every pooled connection dead: the next borrow replaces it.

    Without the check on borrow, each dead connection failed one request (a 503) after
    the primary was back (found by `make chaos`).
    """
    primary = connections["default"]
    with primary.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    primary.close()  # back to the pool, as at the end of a request
    probe = probe_conninfo(primary.settings_dict, connect_timeout=2, statement_timeout=5)
    with psycopg.connect(probe, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", (pid,))
        replica.wait_until(
            lambda: (
                other.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)
                ).fetchone()
                == (0,)
            ),
            what="the backend to exit",
        )

    with primary.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid


def test_exhausted_pool_is_a_503_not_a_hang(routed, monkeypatch) -> None:
    user = UserFactory.create()
    client = token_client(user)
    settle()
    connections["default"].close()
    pool = cast(Any, connections["default"]).pool
    monkeypatch.setattr(pool, "timeout", 0.2)
    held: list[psycopg.Connection[Any]] = []
    with contextlib.suppress(PoolTimeout):
        while len(held) <= pool.max_size:
            held.append(pool.getconn())
    assert len(held) == pool.max_size
    try:
        response = client.get(f"/api/v1/users/{uuid.uuid4()}/")
    finally:
        for conn in held:
            pool.putconn(conn)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"


def test_the_cache_never_keeps_a_row_older_than_the_last_write(routed, settings) -> None:
    """A fill read from a lagging replica cannot outlive the write it missed."""
    # Stale but admitted: however long a busy machine takes between the pause and the
    # read, the replica's lag must not exclude it, or the read never sees the old row.
    settings.REPLICA_MAX_LAG_SECONDS = 300
    user = UserFactory.create(display_name="Before")
    staff = UserFactory.create(is_staff=True)
    writer, reader = token_client(user), token_client(staff)
    settle()
    db_router.monitor.check_now()
    replica.pause_replay()

    changed = writer.patch(f"/api/v1/users/{user.pk}/", {"display_name": "After"}, format="json")
    assert changed.status_code == 200
    assert replica.replica_sql("SELECT display_name FROM users_user WHERE id = %s", (user.pk,)) == (
        "Before"
    )
    db_router.reset()
    db_router.monitor.check_now()
    if replica.REPLICA not in db_router.monitor.readable():
        pytest.fail("the replica must still be admitted for this test to mean anything")
    user_cache.clear_local()
    # The write left its row in Redis; as if Redis had evicted it, only the stamp stays.
    client = shared_redis()
    assert client is not None
    client.delete(user_cache.entry_key(str(user.pk)))
    refused = (
        REGISTRY.get_sample_value("userservice_cache_fills_refused_total", {"cache": "user"}) or 0.0
    )

    # The reader has no pin: its read goes to the stale replica, whose row is older than
    # the version the write stamped, so the fill is refused and the primary answers.
    assert reader.get(f"/api/v1/users/{user.pk}/").json()["display_name"] == "After"
    assert (
        REGISTRY.get_sample_value("userservice_cache_fills_refused_total", {"cache": "user"})
        == refused + 1
    )
    user_cache.clear_local()
    assert reader.get(f"/api/v1/users/{user.pk}/").json()["display_name"] == "After"
