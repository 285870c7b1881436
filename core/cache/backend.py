"""The cache layer: a process-local layer, then Redis, then the database.

Three parts, used by the apps' own cache modules (e.g. users/cache.py); docs/cache.md
tells the whole story.

* `GuardedRedis` / `redis_guard`: every Redis command of this process (django-redis,
  scripts, locks, pipelines) goes through one circuit breaker (pybreaker), because the
  guard sits in the redis-py client itself. Short socket timeouts bound what one failed
  call costs; after REDIS_BREAKER_FAIL_MAX failures in a row Redis is skipped for
  REDIS_BREAKER_RESET_TIMEOUT seconds, then one trial call decides. A failed or skipped
  command raises RedisUnavailable.
* `ResilientRedisCache`: the Django cache backend (django-redis). Values are JSON, never
  pickle, and anything else found in Redis reads as a miss. While Redis fails, the common
  operations use a process-local LocMemCache, so throttles keep counting (per process).
* `VersionedCache`: read-through cache of JSON data keyed by id.
  - Redis holds, per key, a stamp (the version of the last committed write it was told
    of, shared by every release) and an entry per schema (the data and its version). An
    entry is served only if it is not older than the stamp; one script stores fills and
    writes alike, refusing anything older than the stamp or the entry there. So a reader
    that loaded an old row (racing a write, or from a lagging replica) can never put it
    back; it loads again from the primary instead.
  - The local layer keeps decoded entries; one is served only if not older than the
    stamp (read with the caller's own keys on the hot path, else one GET). While Redis
    cannot be asked, for USER_LOCAL_CACHE_TTL seconds.
  - Single flight: concurrent misses of one key in a process wait for one load, and
    redis-py's lock makes other processes wait for that fill.
  - Writes: after commit, the committed row is stored (`replace`); if Redis cannot take
    it, the writing process still refuses older copies (its local stamps), and a durable
    caller (an event handler) moves the stamp once Redis answers (`advance`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pybreaker
import redis
from cachetools import LRUCache
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.signals import request_finished, request_started, setting_changed
from django.db import connection, transaction
from django.dispatch import receiver
from django_redis.cache import RedisCache
from django_redis.exceptions import ConnectionInterrupted
from django_redis.serializers.json import JSONSerializer
from prometheus_client import Counter, Gauge
from redis.backoff import NoBackoff
from redis.exceptions import LockError
from redis.retry import Retry

logger = logging.getLogger(__name__)

T = TypeVar("T")

# --- Metrics ------------------------------------------------------------------------

CACHE_HITS = Counter(
    "userservice_cache_hits_total", "Cache lookups answered by a layer.", ["cache", "layer"]
)
CACHE_MISSES = Counter(
    "userservice_cache_misses_total", "Cache lookups a layer could not answer.", ["cache", "layer"]
)
CACHE_LOADS = Counter(
    "userservice_cache_loads_total", "Loads from the database after a miss.", ["cache"]
)
CACHE_FILLS_REFUSED = Counter(
    "userservice_cache_fills_refused_total",
    "Fills refused because a newer version was committed (or is cached) already.",
    ["cache"],
)
REDIS_ERRORS = Counter(
    "userservice_redis_errors_total", "Redis calls that failed (connection, timeout)."
)
REDIS_BREAKER_OPEN = Gauge(
    "userservice_redis_breaker_open",
    "1 while the circuit breaker skips Redis, else 0.",
    # Under gunicorn with PROMETHEUS_MULTIPROC_DIR: 1 if any live worker skips Redis.
    multiprocess_mode="livemax",
)
REDIS_FALLBACKS = Counter(
    "userservice_redis_fallbacks_total",
    "Django cache operations served by the process-local fallback.",
)
UNDECODABLE_VALUES = Counter(
    "userservice_cache_undecodable_total",
    "Values read from Redis that were not what this code writes (ignored as misses).",
)

# --- Circuit breaker ----------------------------------------------------------------

# What counts as "Redis is unavailable". Anything else (a bug, a bad argument) is raised.
REDIS_DOWN_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    # A replica after a failover, or a full Redis with `noeviction`: down for our writes.
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    ConnectionInterrupted,
    OSError,
)


class RedisUnavailable(Exception):
    """Redis failed or is being skipped by the open breaker; use the next layer."""


class _BreakerListener(pybreaker.CircuitBreakerListener):
    def failure(self, cb: pybreaker.CircuitBreaker, exc: BaseException) -> None:
        REDIS_ERRORS.inc()

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        REDIS_BREAKER_OPEN.set(1 if new_state.name == pybreaker.STATE_OPEN else 0)
        logger.warning(
            "redis circuit breaker: %s -> %s", old_state.name if old_state else None, new_state.name
        )


class RedisGuard:
    """One circuit breaker around every Redis call of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._breaker: pybreaker.CircuitBreaker | None = None

    @property
    def breaker(self) -> pybreaker.CircuitBreaker:
        """The breaker, built from settings on first use (and after settings change)."""
        with self._lock:
            if self._breaker is None:
                self._breaker = pybreaker.CircuitBreaker(
                    fail_max=settings.REDIS_BREAKER_FAIL_MAX,
                    reset_timeout=settings.REDIS_BREAKER_RESET_TIMEOUT,
                    # Only unavailability opens the breaker; other errors are bugs.
                    exclude=[lambda exc: not isinstance(exc, REDIS_DOWN_ERRORS)],
                    listeners=[_BreakerListener()],
                    name="redis",
                )
                REDIS_BREAKER_OPEN.set(0)
            return self._breaker

    def reset(self) -> None:
        """Forget the breaker's state; the next call builds a closed one from settings."""
        with self._lock:
            self._breaker = None
        REDIS_BREAKER_OPEN.set(0)

    @property
    def is_open(self) -> bool:
        """True while Redis is being skipped."""
        return bool(self.breaker.current_state == pybreaker.STATE_OPEN)

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one Redis operation; raise RedisUnavailable if it failed or was skipped.

        `calling()` rather than `call()`: pybreaker's `call` holds the breaker's lock for
        the whole operation, which would serialise every thread's Redis calls.
        """
        try:
            with self.breaker.calling():
                return func(*args, **kwargs)
        except pybreaker.CircuitBreakerError as exc:
            raise RedisUnavailable(str(exc)) from exc
        except REDIS_DOWN_ERRORS as exc:
            raise RedisUnavailable(str(exc)) from exc


redis_guard = RedisGuard()


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    """Tests override breaker settings; rebuild the breaker from them."""
    if setting.startswith("REDIS_BREAKER_") or setting == "CACHES":
        redis_guard.reset()


# --- The guarded redis-py client ----------------------------------------------------


class GuardedRedis(redis.Redis):
    """redis-py's client with every command behind the process's circuit breaker.

    The guard sits under everything that talks to Redis (django-redis' methods, scripts,
    locks, pipelines), so no method can be left outside it. A failure or a skipped call
    raises RedisUnavailable.
    """

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Run one command through the breaker."""
        return redis_guard.call(super().execute_command, *args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> GuardedPipeline:
        """A pipeline whose round trip goes through the breaker."""
        return GuardedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )


class GuardedPipeline(redis.client.Pipeline):
    """redis-py's pipeline with its round trips behind the process's circuit breaker."""

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Send the queued commands through the breaker."""
        return redis_guard.call(super().execute, raise_on_error)

    def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        """WATCH and the commands after it, each through the breaker."""
        return redis_guard.call(super().immediate_execute_command, *args, **options)


# --- The Django cache backend -------------------------------------------------------

# What a value that failed to decode becomes: a miss. Anything that can write to Redis
# could plant a value; it must never run code here (pickle would) nor fail the request.
UNDECODABLE: Any = object()


class SafeJSONSerializer(JSONSerializer):
    """django-redis's JSON serializer, reading anything that is not JSON as a miss.

    JSON rather than django-redis' default pickle: unpickling runs whatever the bytes say,
    so a pickle planted in Redis (a throttle history, say) would run in the web worker.
    """

    def loads(self, value: bytes) -> Any:
        """The decoded value, or UNDECODABLE for bytes this code never writes."""
        try:
            return super().loads(value)
        except ValueError:  # UnicodeDecodeError and JSONDecodeError alike
            UNDECODABLE_VALUES.inc()
            logger.warning("cache: ignored a value that is not JSON")
            return UNDECODABLE


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# Django cache methods with a process-local equivalent (with `get` and `get_many`):
# while Redis fails, the fallback answers them. Every other method (ttl, expire, lock,
# delete_pattern, ...) goes through the breaker too (GuardedRedis) and raises
# RedisUnavailable while Redis fails: a process-local answer would be a wrong one.
_WITH_FALLBACK = (
    "set",
    "add",
    "delete",
    "set_many",
    "delete_many",
    "has_key",
    "incr",
    "decr",
    "touch",
)


class ResilientRedisCache(RedisCache):
    """django-redis, but while Redis fails the common operations use a process-local
    LocMemCache, and nothing is ever pickled.

    Throttle counters therefore keep counting per process through an outage (a limit
    holds per worker rather than across workers) and return to Redis when it is back.
    Counts made in the fallback are not carried over: an outage is short and rare, and
    merging would cost more than it saves.
    """

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        options = dict(params.get("OPTIONS", {}))
        # Whatever the settings say: never pickle (see SafeJSONSerializer), and every
        # command behind the breaker.
        options["SERIALIZER"] = _dotted(SafeJSONSerializer)
        options["REDIS_CLIENT_CLASS"] = _dotted(GuardedRedis)
        # redis-py retries failed commands (with back-off) by default; retrying a dead
        # server multiplies the added latency. The breaker decides when to try again.
        options["CONNECTION_POOL_KWARGS"] = {
            "retry": Retry(NoBackoff(), 0),
            **options.get("CONNECTION_POOL_KWARGS", {}),
        }
        super().__init__(server, {**params, "OPTIONS": options})
        # Django's default of 300 entries would cull throttle histories under real
        # traffic, weakening the limits exactly when they fall back here.
        self.fallback = LocMemCache(
            f"redis-fallback-{server}",
            {"TIMEOUT": params.get("TIMEOUT", 300), "OPTIONS": {"MAX_ENTRIES": 100_000}},
        )

    def redis_client(self) -> redis.Redis:
        """The raw (guarded) redis-py client; no I/O until a command runs."""
        return self.client.get_client(write=True)

    def _either(self, name: str, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("client", None)
        if name in ("delete", "delete_many"):
            # Both: a value set in the fallback during an outage must not come back.
            getattr(self.fallback, name)(*args, **kwargs)
        try:
            return getattr(RedisCache, name)(self, *args, **kwargs)
        except (RedisUnavailable, ConnectionInterrupted):
            REDIS_FALLBACKS.inc()
            return getattr(self.fallback, name)(*args, **kwargs)

    def get(self, key: Any, default: Any = None, version: Any = None, client: Any = None) -> Any:
        """Get from Redis (a value that is not JSON is a miss), or from the local
        fallback while Redis fails."""
        value = self._either("get", key, default, version)
        return default if value is UNDECODABLE else value

    def get_many(self, keys: Any, version: Any = None, client: Any = None) -> Any:
        """Get many from Redis (values that are not JSON are misses), or from the local
        fallback while Redis fails."""
        found = self._either("get_many", keys, version)
        return {key: value for key, value in found.items() if value is not UNDECODABLE}

    def count(self, key: str, *, seconds: int) -> int:
        """Add one to the counter `key` (created to live `seconds`) and return its value.

        One round trip; while Redis fails, the local fallback counts instead.
        """
        name = self.make_key(key)
        client = self.redis_client()
        # One MULTI/EXEC round trip: the key cannot expire between the two commands.
        # SET NX then INCR rather than INCR then EXPIRE NX: EXPIRE's NX needs Redis 7.
        pipe = client.pipeline(transaction=True)
        pipe.set(name, 0, ex=seconds, nx=True)
        pipe.incr(name)
        try:
            return int(pipe.execute()[1])
        except RedisUnavailable:
            REDIS_FALLBACKS.inc()
            return _count(self.fallback, key, seconds=seconds)
        except redis.exceptions.ResponseError:
            # Not a counter this code wrote (INCR refused it): start a new count.
            UNDECODABLE_VALUES.inc()
            try:
                client.set(name, 1, ex=seconds)
            except RedisUnavailable:
                return _count(self.fallback, key, seconds=seconds)
            return 1

    def clear(self) -> Any:
        """Clear Redis (if reachable), the fallback and every VersionedCache's local layer."""
        self.fallback.clear()
        for cache in VersionedCache.instances:
            cache.clear_local()
        try:
            return RedisCache.clear(self)
        except (RedisUnavailable, ConnectionInterrupted):
            return False


def _with_fallback(name: str) -> Callable[..., Any]:
    def method(self: ResilientRedisCache, *args: Any, **kwargs: Any) -> Any:
        return self._either(name, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"`{name}` in Redis, or in the process-local fallback while Redis fails."
    return method


for _name in _WITH_FALLBACK:
    setattr(ResilientRedisCache, _name, _with_fallback(_name))


def count_in_window(key: str, *, seconds: int, alias: str = "default") -> int:
    """Add one to the counter `key` in a Django cache, created to live `seconds`; return
    its new value. Redis (ResilientRedisCache) counts atomically across processes."""
    return _count(caches[alias], key, seconds=seconds)


def _count(backend: BaseCache, key: str, *, seconds: int) -> int:
    if isinstance(backend, ResilientRedisCache):
        return backend.count(key, seconds=seconds)
    backend.add(key, 0, seconds)
    try:
        return int(backend.incr(key))
    except ValueError:
        # Expired between add and incr: this request starts the new count.
        backend.set(key, 1, seconds)
        return 1


def shared_redis() -> redis.Redis | None:
    """The (guarded) redis-py client of the default cache, or None without Redis."""
    backend = caches["default"]
    if isinstance(backend, ResilientRedisCache):
        return backend.redis_client()
    return None


# --- Versioned read-through cache ---------------------------------------------------

# In Redis, per key: a stamp, the version of the last committed write that Redis was told
# of, shared by every release; and an entry per cache schema, `{"v": version, "d": data}`.
# The stamp only moves forward, and only to committed versions. A reader serves an entry
# only if it is not older than the stamp: a write moves the stamp, so every release's
# older entries stop being served at once, whichever release wrote.
#
# The one store rule, for fills and writes alike. KEYS: entry, stamp. ARGV: version, the
# stamp's ttl ms, payload, the entry's ttl ms. Refused (0) if older than the stamp or
# than the entry there; anything there that is not our JSON counts as absent.
_STORE = """
local stamp = tonumber(redis.call('GET', KEYS[2])) or -1
local version = tonumber(ARGV[1])
if version < stamp then return 0 end
local current = redis.call('GET', KEYS[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' and (tonumber(decoded['v']) or -1) > version then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
if version > stamp then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
"""

# A committed write reported durably (an event): move the stamp. KEYS: stamp. ARGV:
# version, the stamp's ttl ms.
_ADVANCE = """
local stamp = tonumber(redis.call('GET', KEYS[1])) or -1
if tonumber(ARGV[1]) > stamp then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"""

# `load(latest)` returns (version, data), or None if the row does not exist. With
# `latest=True` it must read the newest committed row (the primary): it is called when
# the first read turned out older than a committed write, e.g. from a lagging replica.
Loader = Callable[[bool], tuple[int, Any] | None]

# Keys already resolved during the current request of this thread (None outside one).
_request_memo = threading.local()


@receiver(request_started)
def _request_started(**kwargs: Any) -> None:
    _request_memo.entries = {}


@receiver(request_finished)
def _request_finished(**kwargs: Any) -> None:
    _request_memo.entries = None


# `VersionedCache.get(stamp=...)` when the caller has not read the stamp.
NOT_FETCHED: Any = object()

# A negative entry's version: older than any real row, so any stamp refuses it.
ABSENT_VERSION = 0


@dataclass(frozen=True)
class Entry:
    """A cached value: `data` (None = the row does not exist), the row's version and when
    this process stored it (monotonic seconds)."""

    version: int
    data: Any
    stored_at: float


@dataclass
class _Flight:
    done: threading.Event
    result: Entry | None = None
    waiters: int = 0


def _decode_entry(raw: Any) -> Entry | None:
    """An entry as Redis holds it; None for anything this code did not write."""
    try:
        decoded = json.loads(raw)
        return Entry(version=int(decoded["v"]), data=decoded["d"], stored_at=time.monotonic())
    except (ValueError, TypeError, KeyError):
        UNDECODABLE_VALUES.inc()
        return None


def _decode_stamp(raw: Any) -> int | None:
    """A stamp as Redis holds it: None if missing; one that is not a number vouches for
    nothing (as new as can be: no copy passes it)."""
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        UNDECODABLE_VALUES.inc()
        return 2**63


class VersionedCache:
    """Two-layer read-through cache of JSON-able data keyed by a string id.

    `load` callables return `(version, data)` for an existing row or None for an absent
    one; versions must grow with every committed write of the row, in commit order.
    `schema` names the shape of `data`: releases with different shapes share the stamps
    (a write by either is seen by both) but never read each other's entries.
    """

    instances: list[VersionedCache] = []

    def __init__(
        self,
        name: str,
        *,
        schema: str,
        ttl: Callable[[], float],
        negative_ttl: Callable[[], float],
        local_ttl: Callable[[], float],
        local_max_entries: Callable[[], int],
    ) -> None:
        self.name = name
        self.schema = schema
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._local_ttl = local_ttl
        self._local_max_entries = local_max_entries
        self._lock = threading.Lock()
        self._local: LRUCache[str, Entry] = LRUCache(maxsize=1)
        # Versions this process committed: older rows are refused here even while Redis
        # cannot be asked, and an older Redis entry is not served. Bounded like the entries.
        self._local_stamps: LRUCache[str, int] = LRUCache(maxsize=1)
        self._flights: dict[str, _Flight] = {}
        self.clear_local()
        VersionedCache.instances.append(self)

    # -- keys

    def entry_key(self, key: str) -> str:
        """The Redis key of `key`'s entry in this cache's schema."""
        return f"cache:{self.name}:{self.schema}:e:{key}"

    def stamp_key(self, key: str) -> str:
        """The Redis key of `key`'s stamp (every schema's), for a caller that fetches it with
        its own keys in one round trip and passes it to `get(stamp=...)`."""
        return f"cache:{self.name}:s:{key}"

    def lock_key(self, key: str) -> str:
        """The Redis key of `key`'s fill lock in this cache's schema: whoever holds it is
        loading `key`, and the other processes wait for its entry."""
        return f"cache:{self.name}:{self.schema}:l:{key}"

    # -- local layer

    def clear_local(self) -> None:
        """Empty this process's layer (tests; settings changes)."""
        with self._lock:
            size = max(1, self._local_max_entries())
            self._local = LRUCache(maxsize=size)
            self._local_stamps = LRUCache(maxsize=size)

    def _local_get(self, key: str) -> Entry | None:
        """The local entry, if younger than its Redis twin's lifetime (TTL)."""
        with self._lock:
            entry = self._local.get(key)
            if entry is None:
                return None
            ttl = self._ttl() if entry.data is not None else self._negative_ttl()
            if time.monotonic() - entry.stored_at >= ttl:
                self._local.pop(key, None)
                return None
            return entry

    def _fresh_unchecked(self, entry: Entry | None) -> bool:
        # Without Redis to check against, a local copy may miss another process's write:
        # USER_LOCAL_CACHE_TTL bounds for how long.
        return entry is not None and time.monotonic() - entry.stored_at < self._local_ttl()

    def _known_version(self, key: str, stamp: int | None) -> int:
        with self._lock:
            return max(-1 if stamp is None else stamp, self._local_stamps.get(key, -1))

    def _local_put(self, key: str, entry: Entry) -> bool:
        """Keep `entry` locally; False if this process knows a newer version was written."""
        with self._lock:
            if entry.version < self._local_stamps.get(key, -1):
                return False
            if self._local_ttl() > 0:
                self._local[key] = entry
            return True

    # -- reads

    def get(self, key: str, load: Loader, *, stamp: Any = NOT_FETCHED) -> Any:
        """The data for `key`: local layer, Redis, else `load()` (then cached).

        `stamp`: the raw value at `stamp_key(key)` if the caller has just read it from
        Redis; a local entry is checked against it instead of asking Redis again.
        Within one HTTP request a key is resolved once: authentication and the view both
        read the caller's own entry, and one request is one point in time.
        """
        memo: dict[tuple[str, str], Any] | None = getattr(_request_memo, "entries", None)
        if memo is not None and (self.name, key) in memo:
            CACHE_HITS.labels(self.name, "request").inc()
            return memo[(self.name, key)]
        data = self._resolve(key, load, stamp)
        if memo is not None:
            memo[(self.name, key)] = data
        return data

    def _resolve(self, key: str, load: Loader, raw_stamp: Any) -> Any:
        local = self._local_get(key)
        client = shared_redis()
        try:
            if client is None:
                raise RedisUnavailable("no shared cache configured")
            if local is not None:
                if raw_stamp is NOT_FETCHED:
                    raw_stamp = client.get(self.stamp_key(key))
                stamp = _decode_stamp(raw_stamp)
                # No stamp: Redis lost it, so nothing vouches for the copy beyond the
                # bound that holds without Redis.
                if (stamp is None and self._fresh_unchecked(local)) or (
                    stamp is not None and local.version >= stamp
                ):
                    CACHE_HITS.labels(self.name, "local").inc()
                    return local.data
                with self._lock:
                    self._local.pop(key, None)
            CACHE_MISSES.labels(self.name, "local").inc()
            entry = self._from_redis(client, key)
        except RedisUnavailable:
            if self._fresh_unchecked(local):
                CACHE_HITS.labels(self.name, "local").inc()
                return local.data  # type: ignore[union-attr]
            CACHE_MISSES.labels(self.name, "redis").inc()
            return self._load(key, load, client=None).data
        if entry is not None:
            return entry.data
        CACHE_MISSES.labels(self.name, "redis").inc()
        return self._load(key, load, client=client).data

    def _from_redis(self, client: redis.Redis, key: str) -> Entry | None:
        """The Redis entry (kept locally too) if it is not older than any committed write
        known, read with its stamp in one round trip; else None."""
        raw, raw_stamp = client.mget([self.entry_key(key), self.stamp_key(key)])
        entry = None if raw is None else _decode_entry(raw)
        if entry is None or entry.version < self._known_version(key, _decode_stamp(raw_stamp)):
            return None
        CACHE_HITS.labels(self.name, "redis").inc()
        self._local_put(key, entry)
        return entry

    def prime(self, key: str, version: int, data: Any) -> bool:
        """Cache data the caller has just read from the database (same rules as a fill)."""
        return self._fill(key, Entry(version, data, time.monotonic()), client=shared_redis())

    def _load(self, key: str, load: Loader, *, client: redis.Redis | None) -> Entry:
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight(done=threading.Event())
            else:
                flight.waiters += 1
        if not leader:
            # Another thread of this process is loading this key: wait for its result.
            if flight.done.wait(self._wait_seconds()) and flight.result is not None:
                CACHE_HITS.labels(self.name, "flight").inc()
                return flight.result
            return self._load_now(key, load, client=client)
        try:
            flight.result = self._load_as_leader(key, load, client=client)
            return flight.result
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()

    def waiting(self, key: str) -> int:
        """How many threads of this process wait for the load of `key` now."""
        with self._lock:
            flight = self._flights.get(key)
            return 0 if flight is None else flight.waiters

    def _wait_seconds(self) -> float:
        return float(settings.CACHE_FILL_LOCK_TIMEOUT) + 1.0

    def _load_as_leader(self, key: str, load: Loader, *, client: redis.Redis | None) -> Entry:
        if client is None or connection.in_atomic_block:
            return self._load_now(key, load, client=client)
        # redis-py's lock: other processes missing this key wait for this fill rather
        # than load it too; it expires by itself if this process dies mid-load.
        fill_lock = client.lock(
            self.lock_key(key), timeout=float(settings.CACHE_FILL_LOCK_TIMEOUT), blocking=False
        )
        try:
            locked = fill_lock.acquire()
        except RedisUnavailable:
            return self._load_now(key, load, client=None)
        if not locked:
            waited = self._wait_for_fill(key, client)
            if waited is not None:
                return waited
            return self._load_now(key, load, client=client)
        try:
            return self._load_now(key, load, client=client)
        finally:
            # A load that outlived the lock must not release another process's.
            with contextlib.suppress(RedisUnavailable, LockError):
                fill_lock.release()

    def _wait_for_fill(self, key: str, client: redis.Redis) -> Entry | None:
        """Another process holds the fill lock: poll for its entry, up to the lock's life."""
        deadline = time.monotonic() + float(settings.CACHE_FILL_LOCK_TIMEOUT)
        with contextlib.suppress(RedisUnavailable):
            while time.monotonic() < deadline:
                time.sleep(0.005)
                entry = self._from_redis(client, key)
                if entry is not None:
                    return entry
        return None

    def _load_now(self, key: str, load: Loader, *, client: redis.Redis | None) -> Entry:
        CACHE_LOADS.labels(self.name).inc()
        entry = self._entry(load(False))
        if not self._fill(key, entry, client=client):
            # Older than a committed write: read the latest and serve (and cache) that.
            CACHE_LOADS.labels(self.name).inc()
            entry = self._entry(load(True))
            self._fill(key, entry, client=client)
        return entry

    @staticmethod
    def _entry(loaded: tuple[int, Any] | None) -> Entry:
        version, data = (ABSENT_VERSION, None) if loaded is None else loaded
        return Entry(version=version, data=data, stored_at=time.monotonic())

    def _fill(self, key: str, entry: Entry, *, client: redis.Redis | None) -> bool:
        """Cache `entry` unless it is older than what is known; False if refused as such."""
        if connection.in_atomic_block:
            # Inside a transaction the row read may be uncommitted: a rollback would leave
            # the cache holding data that never existed. Serve it, do not keep it.
            return True
        if client is not None:
            try:
                stored = self._store(client, key, entry.version, entry.data)
            except RedisUnavailable:
                stored = True  # Redis cannot be asked; the local stamps still guard this process.
            if not stored:
                CACHE_FILLS_REFUSED.labels(self.name).inc()
                return False
        return self._local_put(key, entry)

    def _store(self, client: redis.Redis, key: str, version: int, data: Any) -> bool:
        ttl = self._ttl() if data is not None else self._negative_ttl()
        payload = json.dumps({"v": version, "d": data}, separators=(",", ":"))
        return bool(
            client.register_script(_STORE)(
                keys=[self.entry_key(key), self.stamp_key(key)],
                args=[version, self._stamp_ttl_ms(), payload, max(1, int(ttl * 1000))],
            )
        )

    def _stamp_ttl_ms(self) -> int:
        # Outlives every entry made before it, so a stamp refuses any older entry left.
        return max(1, int(max(self._ttl(), self._negative_ttl()) * 1000))

    # -- writes

    def replace_on_commit(self, key: str, *, version: int, data: Any) -> None:
        """After the current transaction commits (at once outside one), make `data` (the
        committed row at `version`) the cached value everywhere and refuse any later fill
        older than `version`: the next read finds the new value instead of loading it."""
        transaction.on_commit(lambda: self.replace(key, version=version, data=data), robust=True)

    def replace(self, key: str, *, version: int, data: Any) -> None:
        """Cache `data` at `version` here and in Redis; refuse older rows from now on.

        If Redis cannot take it, this process still refuses older copies (its local
        stamp), and the durable path (`advance`, from the write's event) tells Redis.
        """
        memo: dict[tuple[str, str], Any] | None = getattr(_request_memo, "entries", None)
        if memo is not None:
            memo.pop((self.name, key), None)
        with self._lock:
            if version > self._local_stamps.get(key, -1):
                self._local_stamps[key] = version
        self._local_put(key, Entry(version, data, time.monotonic()))
        client = shared_redis()
        if client is None:
            return
        try:
            self._store(client, key, version, data)
        except RedisUnavailable:
            logger.warning("cache %s: write of %s not in Redis (Redis down)", self.name, key)

    def advance(self, key: str, *, version: int) -> None:
        """Move `key`'s stamp in Redis to the committed `version`: every older entry, of
        every schema, stops being served. Raises RedisUnavailable if Redis is down (for a
        durable caller, an event handler, that retries until Redis takes it)."""
        self.advance_many({key: version})

    def advance_many(self, versions: dict[str, int]) -> None:
        """`advance` for many keys at once, in one round trip to Redis."""
        client = shared_redis()
        if client is None or not versions:
            return
        script = client.register_script(_ADVANCE)
        ttl_ms = self._stamp_ttl_ms()
        with client.pipeline(transaction=False) as pipe:
            for key, version in versions.items():
                script(keys=[self.stamp_key(key)], args=[version, ttl_ms], client=pipe)
            pipe.execute()
