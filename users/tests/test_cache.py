"""users.cache, against the real Redis and PostgreSQL of `make test`: hits per layer with
pinned query counts, invalidation on every write path, versioned fills, rollback,
negative entries, stampedes, cached tokens and revocation (also while Redis holds writes),
other app servers (one with its clock 5 s ahead), two releases' schemas side by side,
the read-only principal, and values planted in Redis."""

import inspect
import json
import pickle
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.cache import cache
from django.db import connection, transaction
from django.test import RequestFactory
from knox.models import AuthToken
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from core.cache.backend import VersionedCache, redis_guard
from core.db import router as db_router
from users import cache as users_cache_module
from users import services as user_services
from users.api.serializers import UserSerializer
from users.authentication import TokenAuthentication
from users.cache import (
    user_cache,
    user_cache_load,
    user_cache_prime,
    user_entry_get,
)
from users.models import CachedPrincipal, User
from users.tests.conftest import Peer
from users.tests.factories import DEFAULT_PASSWORD, UserFactory

# Fills are skipped inside transactions (they could cache uncommitted rows), so these
# tests run with real commits.
pytestmark = pytest.mark.django_db(transaction=True)

ClientFor = Callable[[User], APIClient]
STRONG = "violet-harbour-lantern-42"
ROOT = Path(__file__).resolve().parents[2]


def url(user: User | uuid.UUID) -> str:
    return f"/api/v1/users/{user.pk if isinstance(user, User) else user}/"


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def hits(layer: str, cache: str = "user") -> float:
    return metric("userservice_cache_hits_total", cache=cache, layer=layer)


def entry_key(user_id: Any) -> str:
    return user_cache.entry_key(str(user_id))


@pytest.fixture
def redis_client(services: dict[str, str]) -> redis.Redis:
    return redis.Redis.from_url(services["REDIS_URL"])


def commands(client: redis.Redis) -> dict[str, int]:
    """Commands Redis has run, by name (its own count: `INFO commandstats`)."""
    stats = client.info("commandstats")
    counts = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    counts.pop("info", None)  # this very question
    return counts


@contextmanager
def counting_queries() -> Iterator[list[str]]:
    """SQL run by this thread's connection, whatever the test's own wrappers."""
    seen: list[str] = []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        yield seen


class TestLayers:
    def test_warm_get_runs_no_query(
        self, services: dict[str, str], user: User, client_for: ClientFor, django_assert_num_queries
    ) -> None:
        client = client_for(user)
        # Knox's token query (with the user); the user row it loaded is cached, so
        # reading oneself needs nothing more.
        with django_assert_num_queries(1):
            first = client.get(url(user))
        with django_assert_num_queries(0):
            warm = client.get(url(user))
        with django_assert_num_queries(0):
            me = client.get("/api/v1/users/me/")
        assert first.status_code == warm.status_code == me.status_code == 200
        assert warm.json() == first.json() == me.json()
        assert warm.json()["id"] == str(user.pk)

    def test_warm_get_costs_two_redis_round_trips(
        self, services: dict[str, str], user: User, client_for: ClientFor, redis_client: redis.Redis
    ) -> None:
        client = client_for(user)
        client.get(url(user))  # fills the caches
        client.get(url(user))  # this process learns the token's user
        before = commands(redis_client)
        assert client.get(url(user)).status_code == 200
        used = {name: count - before.get(name, 0) for name, count in commands(redis_client).items()}
        # The token and its user's stamp in one MGET; the throttle's SET NX + INCR in one
        # MULTI/EXEC: two round trips.
        assert {name: count for name, count in used.items() if count} == {
            "mget": 1,
            "multi": 1,
            "set": 1,
            "incrby": 1,
            "exec": 1,
        }

    def test_staff_reading_another_user(
        self,
        services: dict[str, str],
        staff: User,
        user: User,
        client_for: ClientFor,
        django_assert_num_queries,
    ) -> None:
        client = client_for(staff)
        with django_assert_num_queries(2):  # the token with its user, the user read
            assert client.get(url(user)).json()["email"] == user.email
        with django_assert_num_queries(0):
            assert client.get(url(user)).json()["email"] == user.email

    def test_each_layer_in_turn(
        self, services: dict[str, str], user: User, redis_client: redis.Redis
    ) -> None:
        before = {layer: hits(layer) for layer in ("local", "redis")}
        with counting_queries() as cold:
            entry = user_entry_get(user.pk)
        assert len(cold) == 1
        assert entry is not None
        assert entry["user"]["email"] == user.email
        stored = redis_client.get(entry_key(user.pk))
        assert isinstance(stored, bytes)
        assert json.loads(stored)["d"] == entry

        with counting_queries() as local:
            assert user_entry_get(user.pk) == entry
        assert local == []
        assert hits("local") == before["local"] + 1

        user_cache.clear_local()  # as in a process that has not read it yet
        with counting_queries() as from_redis:
            assert user_entry_get(user.pk) == entry
        assert from_redis == []
        assert hits("redis") == before["redis"] + 1

    def test_permission_is_checked_before_the_cache(
        self,
        services: dict[str, str],
        user: User,
        client_for: ClientFor,
        redis_client: redis.Redis,
    ) -> None:
        other = UserFactory.create()
        client = client_for(user)
        for _ in range(2):
            assert client.get(url(other)).status_code == 404
        # Neither read nor filled: the id was never looked up.
        assert redis_client.get(entry_key(other.pk)) is None

    def test_unknown_ids_are_cached_briefly_and_creation_clears_them(
        self,
        services: dict[str, str],
        staff: User,
        client_for: ClientFor,
        monkeypatch: pytest.MonkeyPatch,
        django_assert_num_queries,
    ) -> None:
        client = client_for(staff)
        probe = uuid.uuid4()
        client.get("/api/v1/users/me/")  # warm the token
        with django_assert_num_queries(1):
            assert client.get(url(probe)).status_code == 404
        with django_assert_num_queries(0):
            assert client.get(url(probe)).status_code == 404

        # The sign-up that happens to draw the probed id.
        monkeypatch.setattr(User._meta.get_field("id"), "_get_default", lambda: probe)
        user_services.user_create(email="probe@example.com", password=STRONG)
        response = client.get(url(probe))
        assert response.status_code == 200
        assert response.json()["email"] == "probe@example.com"


class TestInvalidation:
    @pytest.mark.parametrize(
        ("write", "field", "expected"),
        [
            (
                lambda u: user_services.user_update(user=u, data={"display_name": "New"}),
                "display_name",
                "New",
            ),
            (
                lambda u: user_services.user_update(user=u, data={"is_staff": True}),
                "is_staff",
                True,
            ),
            (lambda u: user_services.user_deactivate(user=u), "is_active", False),
            (
                lambda u: user_services.user_set_password(user=u, password=STRONG),
                "updated_at",
                None,
            ),
        ],
        ids=["update", "staff-flag", "deactivate", "password"],
    )
    def test_every_write_is_read_at_once(
        self,
        services: dict[str, str],
        staff: User,
        user: User,
        client_for: ClientFor,
        write: Callable[[User], User],
        field: str,
        expected: Any,
    ) -> None:
        client = client_for(staff)
        before = client.get(url(user)).json()
        assert client.get(url(user)).json() == before  # warm in both layers

        written = write(User.objects.get(pk=user.pk))

        after = client.get(url(user)).json()
        if expected is None:
            assert after[field] != before[field]
        else:
            assert after[field] == expected
        assert after["updated_at"] == written.updated_at.isoformat().replace("+00:00", "Z")

    def test_admin_bulk_action_invalidates(
        self, services: dict[str, str], user: User, client_for: ClientFor
    ) -> None:
        admin = UserFactory.create(is_staff=True, is_superuser=True)
        reader = client_for(admin)
        assert reader.get(url(user)).json()["is_active"] is True
        browser = APIClient()
        browser.force_login(admin)
        response = browser.post(
            "/admin/users/user/",
            {"action": "deactivate_users", "_selected_action": [str(user.pk)], "post": "yes"},
        )
        assert response.status_code == 302
        assert reader.get(url(user)).json()["is_active"] is False

    def test_fill_older_than_the_last_committed_write_is_refused(
        self, services: dict[str, str], user: User, redis_client: redis.Redis
    ) -> None:
        stale = User.objects.get(pk=user.pk)  # e.g. what a lagging replica returns
        user_services.user_update(user=user, data={"display_name": "Committed"})
        refused = metric("userservice_cache_fills_refused_total", cache="user")

        user_cache_prime(stale)

        assert metric("userservice_cache_fills_refused_total", cache="user") == refused + 1
        # The write put its committed row in the cache; the stale one did not replace it.
        stored = redis_client.get(entry_key(user.pk))
        assert isinstance(stored, bytes)
        assert json.loads(stored)["d"]["user"]["display_name"] == "Committed"
        user_cache.clear_local()
        with counting_queries() as queries:
            entry = user_entry_get(user.pk)
        assert queries == []
        assert entry is not None
        assert entry["user"]["display_name"] == "Committed"

    def test_a_write_caches_the_committed_row_not_the_callers_copy(
        self, services: dict[str, str], user: User, redis_client: redis.Redis
    ) -> None:
        stale = User.objects.get(pk=user.pk)
        User.objects.filter(pk=user.pk).update(display_name="Committed elsewhere")
        user_services.user_update(user=stale, data={"email": f"new-{user.email}"})
        stored = redis_client.get(entry_key(user.pk))
        assert isinstance(stored, bytes)
        cached = json.loads(stored)["d"]["user"]
        assert (cached["display_name"], cached["email"]) == (
            "Committed elsewhere",
            f"new-{user.email}",
        )

    def test_a_reader_racing_a_write_reads_the_latest_instead_of_caching_the_old_row(
        self, services: dict[str, str], user: User
    ) -> None:
        reads: list[bool] = []

        def read_then_someone_writes(latest: bool) -> Any:
            reads.append(latest)
            row = user_cache_load(user.pk, latest)
            if not latest:
                # The reader has the old row (as from a lagging replica), and the write
                # commits, and invalidates, before the reader fills.
                user_services.user_update(
                    user=User.objects.get(pk=user.pk), data={"display_name": "Written"}
                )
            return row

        served = user_cache.get(str(user.pk), read_then_someone_writes)
        # The old row's fill was refused, so the latest was read from the primary.
        assert reads == [False, True]
        assert served["user"]["display_name"] == "Written"
        with counting_queries() as queries:
            entry = user_entry_get(user.pk)
        assert queries == []
        assert entry == served

    def test_rollback_leaves_nothing_cached(
        self, services: dict[str, str], user: User, redis_client: redis.Redis
    ) -> None:
        original = user.display_name
        seen: list[Any] = []

        def write_read_and_fail() -> None:
            with transaction.atomic():
                user_services.user_update(user=user, data={"display_name": "Uncommitted"})
                seen.append(user_entry_get(user.pk))  # reads its own uncommitted row
                raise RuntimeError("roll back")

        with pytest.raises(RuntimeError):
            write_read_and_fail()
        assert seen[0]["user"]["display_name"] == "Uncommitted"

        assert redis_client.get(entry_key(user.pk)) is None
        with counting_queries() as queries:
            entry = user_entry_get(user.pk)
        assert len(queries) == 1
        assert entry is not None
        assert entry["user"]["display_name"] == original


class TestStampede:
    @pytest.fixture(autouse=True)
    def _patient(self, settings: Any) -> None:
        # Waiters give up after this; a slow CI machine must not make them load too.
        settings.CACHE_FILL_LOCK_TIMEOUT = 10

    def test_concurrent_misses_load_once(self, services: dict[str, str], user: User) -> None:
        threads_count = 12
        release = threading.Event()
        queries: list[str] = []
        results: list[Any] = []

        def gate(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            queries.append(sql)
            # Hold the one load until every other thread waits for it.
            release.wait(10)
            return execute(sql, params, many, context)

        def read() -> None:
            try:
                # A new thread starts with an empty context: read the primary like the
                # test's own thread does (conftest), so the one load is the one counted.
                with db_router.use_primary(), connection.execute_wrapper(gate):
                    results.append(user_entry_get(user.pk))
            finally:
                connection.close()

        threads = [threading.Thread(target=read) for _ in range(threads_count)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while user_cache.waiting(str(user.pk)) < threads_count - 1:
            assert time.monotonic() < deadline, "threads never queued behind one load"
            time.sleep(0.005)
        release.set()
        for thread in threads:
            thread.join(10)

        assert len(queries) == 1
        assert len(results) == threads_count
        assert all(result == results[0] for result in results)
        assert results[0]["user"]["id"] == str(user.pk)

    def test_another_process_filling_is_waited_for(
        self, services: dict[str, str], user: User, redis_client: redis.Redis
    ) -> None:
        # Another process holds the fill lock: this one waits for its entry, no query.
        redis_client.set(user_cache.lock_key(str(user.pk)), "other-process", px=20_000)
        misses = metric("userservice_cache_misses_total", cache="user", layer="redis")
        found: list[Any] = []
        counted: list[int] = []

        def read() -> None:
            try:
                with counting_queries() as queries:
                    found.append(user_entry_get(user.pk))
                counted.append(len(queries))
            finally:
                connection.close()

        thread = threading.Thread(target=read)
        thread.start()
        deadline = time.monotonic() + 10
        while metric("userservice_cache_misses_total", cache="user", layer="redis") == misses:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        user_cache_prime(User.objects.get(pk=user.pk))  # the other process's fill
        thread.join(10)
        assert counted == [0]
        assert found[0]["user"]["id"] == str(user.pk)

    def test_a_load_never_releases_another_process_lock(
        self, services: dict[str, str], user: User, redis_client: redis.Redis
    ) -> None:
        lock = user_cache.lock_key(str(user.pk))

        def slow_load(latest: bool) -> Any:
            # Our lock expired during the load and another process took it.
            redis_client.set(lock, "other-process", px=20_000)
            return user_cache_load(user.pk, latest)

        assert user_cache.get(str(user.pk), slow_load)["user"]["id"] == str(user.pk)
        assert redis_client.get(lock) == b"other-process"


class TestTokens:
    def login(self, user: User) -> tuple[APIClient, str]:
        _, secret = AuthToken.objects.create(user=user)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        assert client.get("/api/v1/users/me/").status_code == 200  # now cached
        return client, secret

    def test_cached_token_is_never_stored_raw(
        self, services: dict[str, str], user: User, redis_client: redis.Redis
    ) -> None:
        _, secret = self.login(user)
        keys: list[bytes] = list(redis_client.keys("*"))  # type: ignore[arg-type]
        assert any(key.startswith(b"auth:token:") for key in keys)
        for key in keys:
            assert secret.encode() not in key
            value = redis_client.get(key)
            assert not isinstance(value, bytes) or secret.encode() not in value

    def test_logout_revokes_at_once(
        self, services: dict[str, str], user: User, django_assert_num_queries
    ) -> None:
        client, _ = self.login(user)
        with django_assert_num_queries(0):
            assert client.get("/api/v1/users/me/").status_code == 200
        assert client.post("/api/v1/auth/logout/").status_code == 204
        with django_assert_num_queries(0):  # refused by the tombstone
            assert client.get("/api/v1/users/me/").status_code == 401

    def test_password_change_revokes_other_cached_tokens(
        self, services: dict[str, str], user: User
    ) -> None:
        changer, _ = self.login(user)
        other, _ = self.login(user)
        response = changer.post(
            f"{url(user)}password/",
            {"current_password": DEFAULT_PASSWORD, "password": STRONG},
            format="json",
        )
        assert response.status_code == 204
        assert other.get("/api/v1/users/me/").status_code == 401
        assert changer.get("/api/v1/users/me/").status_code == 200

    def test_deactivation_revokes_cached_tokens(
        self, services: dict[str, str], staff: User, user: User, client_for: ClientFor
    ) -> None:
        client, _ = self.login(user)
        assert client_for(staff).delete(url(user)).status_code == 204
        assert client.get("/api/v1/users/me/").status_code == 401

    def test_staff_demotion_applies_to_the_cached_principal(
        self, services: dict[str, str], staff: User, user: User
    ) -> None:
        client, _ = self.login(staff)
        assert client.get(url(user)).status_code == 200
        user_services.user_update(user=User.objects.get(pk=staff.pk), data={"is_staff": False})
        assert client.get(url(user)).status_code == 404


class TestAnotherProcess:
    @pytest.fixture
    def peer(self, start_peer: Callable[..., Peer]) -> Peer:
        """A second Django process on the same test database and Redis."""
        return start_peer()

    def test_a_write_here_is_seen_there_at_once(
        self, services: dict[str, str], user: User, peer: Peer
    ) -> None:
        first = peer(f"get {user.pk}")
        assert first["queries"] == 1
        assert first["data"]["display_name"] == user.display_name
        local = peer(f"get {user.pk}")
        assert local == {"data": first["data"], "queries": 0}  # its local layer

        user_services.user_update(user=user, data={"display_name": "Changed here"})

        # Its local copy is older than the committed version: refused, not served; the
        # write left the new row in Redis, so no query either.
        after = peer(f"get {user.pk}")
        assert after["data"]["display_name"] == "Changed here"
        assert after["queries"] == 0
        assert peer(f"get {user.pk}")["queries"] == 0


class TestRecord:
    def test_the_cached_record_is_built_here_and_matches_the_api(
        self, services: dict[str, str]
    ) -> None:
        users = [
            UserFactory.create(),
            UserFactory.create(is_staff=True, display_name="Zoë ✓"),
            UserFactory.create(is_active=False, display_name=""),
        ]
        for user in users:
            entry = user_entry_get(user.pk)
            assert entry is not None
            row = User.objects.get(pk=user.pk)
            assert entry["user"] == UserSerializer(row).data
            assert (entry["is_superuser"], entry["version"]) == (row.is_superuser, row.version)
        # Its shape is this module's, not the API layer's.
        assert "users.api" not in inspect.getsource(users_cache_module)


class TestServersWithSkewedClocks:
    def test_alternating_writes_are_read_on_both_servers(
        self, services: dict[str, str], user: User, start_peer: Callable[..., Peer]
    ) -> None:
        ahead = start_peer(clock_offset="+5s")
        behind = start_peer()
        assert ahead("clock")["now"] - behind("clock")["now"] >= 4.5, "faketime had no effect"
        for server in (ahead, behind):  # both hold the user in both layers
            assert server(f"get {user.pk}")["data"]["display_name"] == user.display_name

        for turn in range(6):
            writer = (ahead, behind)[turn % 2]
            name = f"written in turn {turn}"
            writer(f"update {user.pk} {name}")
            # Once the write has answered, every read on either server shows it.
            for server in (ahead, behind, ahead, behind):
                assert server(f"get {user.pk}")["data"]["display_name"] == name, turn


class TestReleasesSideBySide:
    def test_two_payload_schemas_read_only_their_own_entries_and_every_write(
        self, services: dict[str, str], user: User
    ) -> None:
        # The other colour: the same cache and Redis, another shape of cached user.
        green = VersionedCache(
            "user",
            schema=f"green-{uuid.uuid4().hex}",
            ttl=lambda: 60.0,
            negative_ttl=lambda: 60.0,
            local_ttl=lambda: 60.0,
            local_max_entries=lambda: 10,
        )
        key = str(user.pk)

        def green_load(latest: bool) -> tuple[int, Any]:
            row = User.objects.get(pk=user.pk)
            return row.version, {"name": row.display_name, "shape": "green"}

        def no_load(latest: bool) -> Any:
            raise AssertionError("served from Redis, not loaded")

        blue_entry = user_entry_get(user.pk)
        green_entry = green.get(key, green_load)
        assert blue_entry is not None
        assert green_entry == {"name": user.display_name, "shape": "green"}

        # As two fresh processes, one of each colour: Redis answers each with its own.
        user_cache.clear_local()
        green.clear_local()
        with counting_queries() as queries:
            assert user_entry_get(user.pk) == blue_entry
            assert green.get(key, no_load) == green_entry
        assert queries == []

        # A write by this colour is read by the other at once (the stamp is shared).
        user_services.user_update(user=user, data={"display_name": "Written by blue"})
        assert green.get(key, green_load) == {"name": "Written by blue", "shape": "green"}
        green.clear_local()
        assert green.get(key, no_load)["name"] == "Written by blue"

    def test_two_releases_in_two_processes_share_redis_but_not_entries(
        self, services: dict[str, str], user: User, start_peer: Callable[..., Peer]
    ) -> None:
        other_schema = f"other-{uuid.uuid4().hex}"
        green = start_peer(CACHE_PEER_SCHEMA=other_schema)
        blue_entry = user_entry_get(user.pk)  # this release's entry
        assert blue_entry is not None
        first = green(f"get {user.pk}")
        assert first["queries"] == 1  # not this release's entry: loaded, in its own shape
        assert first["data"] == {"release": "other", "name": user.display_name, "version": 1}

        # Fresh processes of each release: each is answered by Redis, with its own entry.
        fresh_green = start_peer(CACHE_PEER_SCHEMA=other_schema)
        assert fresh_green(f"get {user.pk}") == {"data": first["data"], "queries": 0}
        user_cache.clear_local()
        with counting_queries() as queries:
            assert user_entry_get(user.pk) == blue_entry
        assert queries == []

        # Each release's writes are read by the other at once.
        user_services.user_update(user=user, data={"display_name": "By blue"})
        assert green(f"get {user.pk}")["data"]["name"] == "By blue"
        green(f"update {user.pk} By green")
        entry = user_entry_get(user.pk)
        assert entry is not None
        assert entry["user"]["display_name"] == "By green"
        assert fresh_green(f"get {user.pk}")["data"]["name"] == "By green"


class TestCachedPrincipal:
    def test_the_principal_from_the_cache_cannot_be_saved(
        self, services: dict[str, str], user: User, client_for: ClientFor
    ) -> None:
        client = client_for(user)
        assert client.get(url(user)).status_code == 200  # the token and user now cached
        token_header = client._credentials["HTTP_AUTHORIZATION"]  # type: ignore[attr-defined]
        principal, _ = TokenAuthentication().authenticate(
            RequestFactory().get("/", HTTP_AUTHORIZATION=token_header)
        )
        assert isinstance(principal, CachedPrincipal)
        assert isinstance(principal, User)
        assert principal.password == ""
        for write in (
            lambda: principal.save(),
            lambda: principal.save(update_fields=["display_name"]),
            lambda: principal.delete(),
        ):
            with pytest.raises(TypeError):
                write()
        stored = User.objects.get(pk=user.pk)
        assert stored.check_password(DEFAULT_PASSWORD)


class TestRevocationWhileRedisHoldsWrites:
    """`CLIENT PAUSE ... WRITE` on the real Redis: reads go on, every write waits."""

    @pytest.fixture
    def pause_writes(self, redis_client: redis.Redis) -> Iterator[Callable[[int], None]]:
        def pause(milliseconds: int) -> None:
            redis_client.execute_command("CLIENT", "PAUSE", milliseconds, "WRITE")

        yield pause
        redis_client.execute_command("CLIENT", "UNPAUSE")

    @pytest.fixture(autouse=True)
    def _quick_breaker(self, settings: Any) -> Iterator[None]:
        settings.REDIS_BREAKER_FAIL_MAX = 100  # the pause is not an outage
        yield
        redis_guard.reset()

    @staticmethod
    def revoke(how: str, user: User, client: APIClient) -> Any:
        if how == "logout":
            return client.post("/api/v1/auth/logout/")
        changer = APIClient()
        _, secret = AuthToken.objects.create(user=user)
        changer.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return changer.post(
            f"{url(user)}password/",
            {"current_password": DEFAULT_PASSWORD, "password": STRONG},
            format="json",
        )

    @pytest.mark.parametrize("how", ["logout", "password-change"])
    def test_once_revocation_answers_no_server_accepts_the_token_then_or_later(
        self,
        services: dict[str, str],
        user: User,
        settings: Any,
        start_peer: Callable[..., Peer],
        pause_writes: Callable[[int], None],
        redis_client: redis.Redis,
        how: str,
    ) -> None:
        settings.AUTH_REVOCATION_TIMEOUT = 10.0
        _, secret = AuthToken.objects.create(user=user)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        other = start_peer()
        assert other(f"auth {secret}")["accepted"] is True
        assert other(f"auth {secret}") == {"accepted": True, "queries": 0}  # from Redis

        pause_writes(2500)
        response = self.revoke(how, user, client)

        assert response.status_code == 204
        # While Redis refuses writes again, and once it takes them.
        pause_writes(1000)
        assert other(f"auth {secret}")["accepted"] is False
        assert client.get("/api/v1/users/me/").status_code == 401
        redis_client.execute_command("CLIENT", "UNPAUSE")
        for _ in range(3):
            assert other(f"auth {secret}")["accepted"] is False
            assert client.get("/api/v1/users/me/").status_code == 401

    def test_a_revocation_redis_cannot_record_in_time_revokes_nothing(
        self,
        services: dict[str, str],
        user: User,
        settings: Any,
        start_peer: Callable[..., Peer],
        pause_writes: Callable[[int], None],
        redis_client: redis.Redis,
    ) -> None:
        settings.AUTH_REVOCATION_TIMEOUT = 0.3
        token, secret = AuthToken.objects.create(user=user)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        other = start_peer()
        assert other(f"auth {secret}")["accepted"] is True

        pause_writes(5000)
        response = client.post("/api/v1/auth/logout/")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "service_unavailable"
        # Not revoked anywhere, so accepting it is right: the client knows to try again.
        assert AuthToken.objects.filter(digest=token.digest).exists()
        assert other(f"auth {secret}")["accepted"] is True

        redis_client.execute_command("CLIENT", "UNPAUSE")
        assert client.post("/api/v1/auth/logout/").status_code == 204
        assert other(f"auth {secret}")["accepted"] is False


class TestUntrustedValuesInRedis:
    """Whatever else can write to Redis plants a pickle: nothing runs, nothing fails."""

    @staticmethod
    def exploit(marker: Path) -> bytes:
        """A pickle whose unpickling creates `marker`."""

        class Exploit:
            def __reduce__(self) -> tuple[Any, ...]:
                return (Path.touch, (marker,))

        return pickle.dumps(Exploit(), protocol=pickle.HIGHEST_PROTOCOL)

    @pytest.fixture
    def planted(self, tmp_path: Path) -> tuple[bytes, Path]:
        # The payload is live: unpickling one like it does create its marker.
        probe = tmp_path / "probe"
        assert pickle.loads(self.exploit(probe)) is None  # noqa: S301 (the point)
        assert probe.exists()
        marker = tmp_path / "unpickled"
        return self.exploit(marker), marker

    def test_a_pickle_in_the_login_throttle_history_is_not_run(
        self,
        services: dict[str, str],
        user: User,
        redis_client: redis.Redis,
        planted: tuple[bytes, Path],
    ) -> None:
        payload, marker = planted
        wrong = {"email": user.email, "password": "not-" + DEFAULT_PASSWORD}
        # A failed login writes every login counter: the IP's, and the failure back-off's.
        assert APIClient().post("/api/v1/auth/token/", wrong, format="json").status_code == 400
        keys = redis_client.keys("*login*")
        assert any(b"login-failures" in key for key in keys)
        assert any(b"login_ip" in key for key in keys)
        for key in keys:
            redis_client.set(key, payload)
        body = {"email": user.email, "password": DEFAULT_PASSWORD}
        response = APIClient().post("/api/v1/auth/token/", body, format="json")
        assert response.status_code == 200
        assert not marker.exists()

    def test_a_pickle_in_a_rate_counter_or_a_read_pin_is_not_run(
        self,
        services: dict[str, str],
        user: User,
        client_for: ClientFor,
        redis_client: redis.Redis,
        planted: tuple[bytes, Path],
    ) -> None:
        payload, marker = planted
        client = client_for(user)
        assert client.get(url(user)).status_code == 200
        for key in redis_client.keys("*throttle_user*"):
            redis_client.set(key, payload)
        redis_client.set(cache.make_key(f"db-router:user-pin:{user.pk}"), payload)
        assert client.get(url(user)).status_code == 200
        assert client.get("/api/v1/users/me/").status_code == 200
        assert not marker.exists()

    def test_a_pickle_in_the_token_or_user_cache_is_not_run(
        self,
        services: dict[str, str],
        user: User,
        client_for: ClientFor,
        redis_client: redis.Redis,
        planted: tuple[bytes, Path],
    ) -> None:
        payload, marker = planted
        client = client_for(user)
        expected = client.get(url(user)).json()
        for pattern in ("auth:token:*", f"cache:user:*{user.pk}"):
            for key in redis_client.keys(pattern):
                redis_client.set(key, payload)
        user_cache.clear_local()
        assert client.get(url(user)).json() == expected
        assert client.get("/api/v1/users/me/").json() == expected
        # The fill after the planted entry replaced it with ours.
        stored = redis_client.get(entry_key(user.pk))
        assert isinstance(stored, bytes)
        assert json.loads(stored)["d"]["user"] == expected
        assert not marker.exists()

    def test_the_cache_never_pickles(self, services: dict[str, str]) -> None:
        cache.set("plain", {"a": [1, 2.5, "x"]}, 30)
        stored = redis.Redis.from_url(services["REDIS_URL"]).get(cache.make_key("plain"))
        assert stored == b'{"a": [1, 2.5, "x"]}'
