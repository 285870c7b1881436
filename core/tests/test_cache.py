"""core.cache.backend: the breaker, the Django backend's local fallback, the versioned cache
without Redis, and the whole service through Redis faults: the test Redis of `make test` is
hung (SIGSTOP) or shut down mid-test, and brought back."""

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from django.core.cache import cache
from django.db import connection
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from conftest import unavailable
from core.cache.backend import RedisUnavailable, VersionedCache, redis_guard
from users import services as user_services
from users.cache import user_cache
from users.models import User

ClientFor = Callable[[User], APIClient]
ROOT = Path(__file__).resolve().parents[2]
# Nothing listens here (a port of this worktree's HTTP range): connections are refused.
REFUSED_URL = "redis://127.0.0.1:18199/0"
FAIL_MAX = 2


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def versioned_cache(*, local_ttl: Callable[[], float] = lambda: 60.0) -> VersionedCache:
    """A VersionedCache of its own (a fresh name), 60 s lifetimes, up to 10 local entries."""
    return VersionedCache(
        f"test-{uuid.uuid4().hex}",
        schema="1",
        ttl=lambda: 60.0,
        negative_ttl=lambda: 60.0,
        local_ttl=local_ttl,
        local_max_entries=lambda: 10,
    )


def resilient_caches(url: str) -> dict[str, Any]:
    # A distinct URL gets its own connection pool (django-redis keys pools by URL), so
    # these short timeouts do not leak into other tests' pools.
    return {
        "default": {
            "BACKEND": "core.cache.backend.ResilientRedisCache",
            "LOCATION": f"{url}?socket_timeout=0.1&socket_connect_timeout=0.1",
            "OPTIONS": {"SOCKET_TIMEOUT": 0.1, "SOCKET_CONNECT_TIMEOUT": 0.1},
        }
    }


@pytest.fixture
def fragile(settings: Any) -> Iterator[None]:
    """Short Redis timeouts and a quick breaker, for fault tests."""
    settings.REDIS_BREAKER_FAIL_MAX = FAIL_MAX
    # Long enough that a slow run does not reach the half-open trial while Redis hangs,
    # short enough that recovery takes seconds.
    settings.REDIS_BREAKER_RESET_TIMEOUT = 2.0
    yield
    redis_guard.reset()


class TestResilientBackendWithoutRedis:
    @pytest.fixture(autouse=True)
    def _refused(self, settings: Any, fragile: None) -> None:
        settings.CACHES = resilient_caches(REFUSED_URL)

    def test_operations_fall_back_to_process_memory(self) -> None:
        assert cache.get("absent") is None
        cache.set("key", "value", 30)
        assert cache.get("key") == "value"
        assert cache.add("key", "other") is False
        cache.delete("key")
        assert cache.get("key", "default") == "default"

    def test_breaker_opens_after_repeated_failures_and_skips_redis(self) -> None:
        errors = metric("userservice_redis_errors_total")
        for _ in range(10):
            cache.get("key")
        assert redis_guard.is_open
        assert metric("userservice_redis_breaker_open") == 1
        # Only the failures that opened it reached the network.
        assert metric("userservice_redis_errors_total") - errors == FAIL_MAX

    def test_every_redis_operation_goes_through_the_breaker(self) -> None:
        for _ in range(FAIL_MAX):
            cache.get("key")
        assert redis_guard.is_open
        errors = metric("userservice_redis_errors_total")
        client = cache.redis_client()  # type: ignore[attr-defined]
        redis_only: list[Callable[[], Any]] = [
            lambda: cache.ttl("key"),  # type: ignore[attr-defined]
            lambda: cache.expire("key", 10),  # type: ignore[attr-defined]
            lambda: cache.persist("key"),  # type: ignore[attr-defined]
            lambda: cache.delete_pattern("key*"),  # type: ignore[attr-defined]
            lambda: cache.keys("*"),  # type: ignore[attr-defined]
            lambda: cache.lock("key", timeout=1).acquire(blocking=False),  # type: ignore[attr-defined]
            lambda: client.pipeline().set("a", 1).get("a").execute(),
            lambda: client.register_script("return 1")(keys=[], args=[]),
            lambda: client.mget(["a", "b"]),
        ]
        for operation in redis_only:
            with pytest.raises(RedisUnavailable):
                operation()
        # Those with a process-local equivalent answer from it.
        cache.set("counter", 5)
        assert cache.decr("counter") == 4
        assert cache.incr("counter") == 5
        assert cache.touch("counter", 10) is True
        # Skipped, not attempted: no network call while the breaker is open.
        assert metric("userservice_redis_errors_total") == errors


class TestVersionedCacheWithoutRedis:
    """`make run`: no REDIS_URL, one process; the local layer alone, with the same rules."""

    @pytest.fixture
    def local_only(self, settings: Any) -> VersionedCache:
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
        return VersionedCache(
            f"test-{uuid.uuid4().hex}",
            schema="1",
            ttl=lambda: 60.0,
            negative_ttl=lambda: 60.0,
            local_ttl=lambda: 60.0,
            local_max_entries=lambda: 2,
        )

    def test_local_hit_invalidation_and_version_guard(self, local_only: VersionedCache) -> None:
        loads: list[str] = []

        def load(version: int, value: str) -> Callable[[bool], tuple[int, Any]]:
            def run(latest: bool) -> tuple[int, Any]:
                loads.append(value)
                return version, value

            return run

        assert local_only.get("a", load(1, "v1")) == "v1"
        assert local_only.get("a", load(1, "unused")) == "v1"
        assert loads == ["v1"]

        local_only.replace("a", version=2, data="v2")
        # A reader that had loaded version 1 before the write cannot keep it.
        assert local_only.prime("a", 1, "v1") is False
        assert local_only.get("a", load(2, "unused")) == "v2"
        assert loads == ["v1"]

    def test_local_copies_live_at_most_the_local_ttl(self, settings: Any) -> None:
        # Without Redis nothing can tell this process about another's write: the local
        # TTL is the bound on how long it may serve the old value.
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
        local_ttl = [60.0]
        versioned = versioned_cache(local_ttl=lambda: local_ttl[0])
        assert versioned.get("a", lambda latest: (1, "old")) == "old"
        assert versioned.get("a", lambda latest: (2, "written elsewhere")) == "old"
        local_ttl[0] = 0.0  # the bound has passed
        assert versioned.get("a", lambda latest: (2, "written elsewhere")) == "written elsewhere"

    def test_local_layer_is_bounded(self, local_only: VersionedCache) -> None:
        loads: list[str] = []

        def load(key: str) -> Callable[[bool], tuple[int, Any]]:
            def run(latest: bool) -> tuple[int, Any]:
                loads.append(key)
                return 1, key

            return run

        for key in ("a", "b", "c", "a"):
            assert local_only.get(key, load(key)) == key
        assert loads == ["a", "b", "c", "a"]  # "a" was evicted: at most 2 entries


class RedisServer:
    """The test Redis of `make test` (scripts/services.sh), to hang, stop and restart."""

    def __init__(self, url: str, database_url: str) -> None:
        services_dir = os.environ.get("SERVICES_DIR", "")
        if not services_dir:
            unavailable("needs the Redis process `make test` started (SERVICES_DIR unset)")
        self.services_dir = services_dir
        self.port = urlsplit(url).port
        self.primary_port = urlsplit(database_url).port
        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=0.2)
        self.paused = False

    def pid(self) -> int:
        return int((Path(self.services_dir) / "run" / "redis.pid").read_text().strip())

    def alive(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def pause(self) -> None:
        os.kill(self.pid(), signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        os.kill(self.pid(), signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "-p", str(self.port), "shutdown", "nosave"],
            check=False,
            capture_output=True,
            # The instance's password, kept out of the command line.
            env={**os.environ, "REDISCLI_AUTH": urlsplit(self.url).password or ""},
        )
        self.wait(lambda: not self.alive(), "redis to stop")

    def start(self, env_file: Path) -> None:
        env = {
            **os.environ,
            "SERVICES_DIR": self.services_dir,
            "SERVICES_PORT_BASE": str(self.primary_port),
            "SERVICES_ENV_FILE": str(env_file),
        }
        subprocess.run(
            [shutil.which("bash") or "bash", "scripts/services.sh", "up"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        self.wait(self.alive, "redis to answer")

    @staticmethod
    def wait(condition: Callable[[], bool], what: str, seconds: float = 15) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.02)


@pytest.fixture
def redis_server(
    services: dict[str, str], settings: Any, fragile: None, tmp_path: Path
) -> Iterator[RedisServer]:
    """The real test Redis, with short client timeouts; always running again afterwards."""
    settings.CACHES = resilient_caches(services["REDIS_URL"])
    server = RedisServer(services["REDIS_URL"], services["DATABASE_URL"])
    yield server
    if server.paused:
        server.resume()
    if not server.alive():
        server.start(tmp_path / "services.env")


def url(user: User) -> str:
    return f"/api/v1/users/{user.pk}/"


def queries_of(request: Callable[[], Any]) -> tuple[Any, int]:
    seen: list[str] = []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        result = request()
    return result, len(seen)


def wait_until_cached(client: APIClient, path: str) -> None:
    """Caching resumes by itself: poll until a request is answered with no query."""
    deadline = time.monotonic() + 15
    while True:
        response, count = queries_of(lambda: client.get(path))
        assert response.status_code == 200
        if count == 0:
            return
        assert time.monotonic() < deadline, "caching did not resume"
        time.sleep(0.05)


@pytest.mark.django_db(transaction=True)
class TestRedisFaults:
    def test_hung_redis_requests_answer_and_missed_invalidations_are_delivered(
        self, redis_server: RedisServer, staff: User, user: User, client_for: ClientFor
    ) -> None:
        client = client_for(staff)
        assert client.get(url(user)).status_code == 200
        wait_until_cached(client, url(user))  # in Redis and the local layer
        errors = metric("userservice_redis_errors_total")

        redis_server.pause()
        try:
            # This write's invalidation cannot reach Redis, which holds the old entry.
            user_services.user_update(
                user=User.objects.get(pk=user.pk), data={"display_name": "During the hang"}
            )
            responses = [client.get(url(user)) for _ in range(10)]
            assert [r.status_code for r in responses] == [200] * 10
            assert {r.json()["display_name"] for r in responses} == {"During the hang"}
            assert client.get("/api/v1/users/me/").status_code == 200
            assert redis_guard.is_open
            assert metric("userservice_redis_breaker_open") == 1
            # Timeouts paid before the breaker opened; then Redis is skipped (one more
            # if a slow run reaches the half-open trial).
            assert metric("userservice_redis_errors_total") - errors <= FAIL_MAX + 1
        finally:
            redis_server.resume()

        wait_until_cached(client, url(user))
        assert not redis_guard.is_open
        user_cache.clear_local()  # as another process would read it: from Redis
        assert client.get(url(user)).json()["display_name"] == "During the hang"

    def test_redis_down_then_back_hit_ratio_recovers(
        self,
        redis_server: RedisServer,
        staff: User,
        user: User,
        client_for: ClientFor,
        tmp_path: Path,
    ) -> None:
        client = client_for(staff)
        wait_until_cached(client, url(user))

        redis_server.stop()
        paths = [url(user), url(staff), "/api/v1/users/me/"] * 4
        assert [client.get(path).status_code for path in paths] == [200] * len(paths)
        assert redis_guard.is_open

        redis_server.start(tmp_path / "services.env")  # empty: `shutdown nosave`
        wait_until_cached(client, url(user))
        loads = metric("userservice_cache_loads_total", cache="user")
        hits = sum(
            metric("userservice_cache_hits_total", cache="user", layer=layer)
            for layer in ("local", "redis")
        )
        for _ in range(20):
            assert client.get(url(user)).status_code == 200
        new_hits = (
            sum(
                metric("userservice_cache_hits_total", cache="user", layer=layer)
                for layer in ("local", "redis")
            )
            - hits
        )
        new_loads = metric("userservice_cache_loads_total", cache="user") - loads
        # Back to (nearly) every lookup answered by the cache; a stray timeout on a busy
        # machine may cost a load or two, not the ratio.
        assert new_hits >= 20
        assert new_hits / (new_hits + new_loads) >= 0.9

    def test_throttles_hold_with_redis_down(
        self, redis_server: RedisServer, api_client: APIClient, throttle_rates: Any
    ) -> None:
        throttle_rates(login_ip="2/minute", signup="1/hour")
        redis_server.stop()
        logins = [
            api_client.post(
                "/api/v1/auth/token/",
                {"email": "who@example.com", "password": "not-it"},
                format="json",
            ).status_code
            for _ in range(3)
        ]
        assert logins == [400, 400, 429]
        signups = [
            api_client.post(
                "/api/v1/users/",
                {"email": f"new{i}@example.com", "password": "violet-harbour-lantern-42"},
                format="json",
            ).status_code
            for i in range(2)
        ]
        assert signups == [201, 429]


@pytest.mark.django_db
def test_throttle_counters_are_shared_in_redis(
    services: dict[str, str], api_client: APIClient
) -> None:
    body = {"email": "a@example.com", "password": "x"}
    api_client.post("/api/v1/auth/token/", body, format="json")
    keys = redis.Redis.from_url(services["REDIS_URL"]).keys("*throttle_login_ip*")
    assert keys, "login throttle history is not in Redis"


def test_local_copies_checked_against_redis_outlive_the_local_ttl(
    services: dict[str, str],
) -> None:
    # With Redis to ask, the stamp says whether a newer version was written, so a local
    # copy older than USER_LOCAL_CACHE_TTL is still served; the TTL bounds only what is
    # served unchecked.
    local_ttl = [60.0]
    versioned = versioned_cache(local_ttl=lambda: local_ttl[0])
    assert versioned.get("a", lambda latest: (1, "v1")) == "v1"
    local_ttl[0] = 1e-9  # every local copy is now older than the local TTL
    hits = metric("userservice_cache_hits_total", cache=versioned.name, layer="local")
    assert versioned.get("a", lambda latest: (1, "not loaded")) == "v1"
    assert metric("userservice_cache_hits_total", cache=versioned.name, layer="local") == hits + 1
    # Another process's write, as Redis knows it: this process's copy is now refused.
    versioned.advance("a", version=2)
    assert versioned.get("a", lambda latest: (2, "v2")) == "v2"


def test_replace_keeps_the_newest_committed_value(services: dict[str, str]) -> None:
    versioned = versioned_cache()
    # Two writers' after-commit replacements arriving out of order.
    versioned.replace("a", version=3, data="v3")
    versioned.replace("a", version=2, data="v2")
    # A late durable invalidation of an older version leaves the newer entry alone.
    versioned.advance("a", version=2)
    versioned.clear_local()  # as another process: Redis alone answers
    assert versioned.get("a", lambda latest: (1, "not loaded")) == "v3"
    # One of a newer version drops it.
    versioned.advance("a", version=4)
    versioned.clear_local()
    assert versioned.get("a", lambda latest: (4, "v4")) == "v4"


def test_a_local_copy_whose_stamp_redis_lost_is_not_trusted_past_the_local_ttl(
    services: dict[str, str],
) -> None:
    local_ttl = [60.0]
    versioned = versioned_cache(local_ttl=lambda: local_ttl[0])
    assert versioned.get("a", lambda latest: (1, "v1")) == "v1"
    client = redis.Redis.from_url(services["REDIS_URL"])
    assert client.get(versioned.stamp_key("a")) == b"1"  # every fill leaves a stamp
    client.delete(versioned.stamp_key("a"))  # evicted, or lost in a failover
    local_ttl[0] = 1e-9
    hits = metric("userservice_cache_hits_total", cache=versioned.name, layer="redis")
    assert versioned.get("a", lambda latest: (1, "not loaded")) == "v1"
    # Served from Redis's entry, not from the unverifiable local copy.
    assert metric("userservice_cache_hits_total", cache=versioned.name, layer="redis") == hits + 1
