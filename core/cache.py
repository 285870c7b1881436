"""The cache layer: a process-local layer, then Redis, then the database.

Three parts, used by the apps' own cache modules (e.g. users/cache.py):

* `redis_guard`: every Redis call goes through one circuit breaker per process
  (pybreaker). Short socket timeouts bound what one failed call costs; after
  REDIS_BREAKER_FAIL_MAX failures in a row Redis is skipped for
  REDIS_BREAKER_RESET_TIMEOUT seconds, then one trial call decides whether it is back.
* `ResilientRedisCache`: the Django cache backend (django-redis) that falls back to a
  process-local LocMemCache while Redis fails, so throttles keep counting (per process)
  instead of turning off, which django-redis' IGNORE_EXCEPTIONS would do.
* `VersionedCache`: read-through cache of plain data keyed by id, with
  - a bounded local layer whose entries, while Redis answers, are used only if no newer
    version was committed since (one small GET, or none when the caller read the stamp
    along with its own keys), for as long as their Redis twins live; while Redis cannot
    be asked, for USER_LOCAL_CACHE_TTL seconds;
  - a Redis layer whose entries carry the version (e.g. `updated_at`) of the row they
    were made from. A write (after commit) stores the committed version as a stamp and
    the committed row as the entry in one script (`replace`); a durable invalidation
    (`invalidate_shared`) stamps and drops any older entry. A fill is refused if its row
    is older than the stamp or than the entry already there. So a reader that loaded the
    old row (racing the write, or from a lagging replica) can never put it back, whatever
    the routing; it loads again with `latest=True` (the primary) and serves that instead.
  - single flight: concurrent misses for one key in a process wait for one load, and a
    short Redis lock makes other processes wait for that fill instead of loading too;
  - negative entries for ids that do not exist, short-lived; creating the row stamps a
    version, which a negative entry (version 0) never passes.

Staleness bounds: while Redis answers, no process serves a version older than the last
committed write's. While Redis is unreachable, a process sees its own writes at once, and
another process's writes after at most USER_LOCAL_CACHE_TTL seconds (nothing can tell it
sooner); invalidations that could not reach Redis are kept and replayed, before Redis is
read again, once it answers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
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
from prometheus_client import Counter, Gauge
from redis.backoff import NoBackoff
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


# --- The Django cache backend -------------------------------------------------------


class ResilientRedisCache(RedisCache):
    """django-redis, but while Redis fails every operation uses a process-local LocMemCache.

    Throttle counters therefore keep counting per process through an outage (a limit
    holds per worker rather than across workers) and return to Redis when it is back.
    Counts made in the fallback are not carried over: an outage is short and rare, and
    merging would cost more than it saves.
    """

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        options = dict(params.get("OPTIONS", {}))
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
        """The raw redis-py client (no I/O until a command runs)."""
        return self.client.get_client(write=True)

    def _either(self, name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return redis_guard.call(getattr(RedisCache, name), self, *args, **kwargs)
        except RedisUnavailable:
            REDIS_FALLBACKS.inc()
            return getattr(self.fallback, name)(*args, **kwargs)

    def get(self, key: Any, default: Any = None, version: Any = None, client: Any = None) -> Any:
        """Get from Redis, or from the local fallback while Redis fails."""
        return self._either("get", key, default=default, version=version)

    def set(self, key: Any, value: Any, timeout: Any = -1, version: Any = None, **kw: Any) -> Any:
        """Set in Redis, or in the local fallback while Redis fails."""
        if timeout == -1:
            timeout = self.default_timeout
        return self._either("set", key, value, timeout=timeout, version=version)

    def add(self, key: Any, value: Any, timeout: Any = -1, version: Any = None, **kw: Any) -> Any:
        """Add to Redis, or to the local fallback while Redis fails."""
        if timeout == -1:
            timeout = self.default_timeout
        return self._either("add", key, value, timeout=timeout, version=version)

    def delete(self, key: Any, version: Any = None, **kw: Any) -> Any:
        """Delete from Redis and from the local fallback."""
        self.fallback.delete(key, version=version)
        return self._either("delete", key, version=version)

    def get_many(self, keys: Any, version: Any = None, **kw: Any) -> Any:
        """Get many from Redis, or from the local fallback while Redis fails."""
        return self._either("get_many", keys, version=version)

    def set_many(self, data: Any, timeout: Any = -1, version: Any = None, **kw: Any) -> Any:
        """Set many in Redis, or in the local fallback while Redis fails."""
        if timeout == -1:
            timeout = self.default_timeout
        return self._either("set_many", data, timeout=timeout, version=version)

    def delete_many(self, keys: Any, version: Any = None, **kw: Any) -> Any:
        """Delete many from Redis and from the local fallback."""
        self.fallback.delete_many(keys, version=version)
        return self._either("delete_many", keys, version=version)

    def has_key(self, key: Any, version: Any = None, **kw: Any) -> Any:
        """Check Redis, or the local fallback while Redis fails."""
        return self._either("has_key", key, version=version)

    def incr(self, key: Any, delta: int = 1, version: Any = None, **kw: Any) -> Any:
        """Increment in Redis, or in the local fallback while Redis fails."""
        return self._either("incr", key, delta=delta, version=version)

    def touch(self, key: Any, timeout: Any = -1, version: Any = None, **kw: Any) -> Any:
        """Touch in Redis, or in the local fallback while Redis fails."""
        if timeout == -1:
            timeout = self.default_timeout
        return self._either("touch", key, timeout=timeout, version=version)

    def count(self, key: str, *, seconds: int) -> int:
        """Add one to the counter `key` (created to live `seconds`) and return its value.

        One round trip; while Redis fails, the local fallback counts instead.
        """
        name = self.make_key(key)

        def increment() -> int:
            # One MULTI/EXEC round trip: the key cannot expire between the two commands.
            # SET NX then INCR rather than INCR then EXPIRE NX: EXPIRE's NX needs Redis 7.
            pipe = self.redis_client().pipeline(transaction=True)
            pipe.set(name, 0, ex=seconds, nx=True)
            pipe.incr(name)
            return int(pipe.execute()[1])

        try:
            return redis_guard.call(increment)
        except RedisUnavailable:
            REDIS_FALLBACKS.inc()
            return _count(self.fallback, key, seconds=seconds)

    def clear(self) -> Any:
        """Clear Redis (if reachable), the fallback and every VersionedCache's local layer."""
        self.fallback.clear()
        for cache in VersionedCache.instances:
            cache.clear_local()
        return self._either("clear")


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
    """The redis-py client of the default cache, or None without Redis (`make run`)."""
    backend = caches["default"]
    if isinstance(backend, ResilientRedisCache):
        return backend.redis_client()
    return None


# --- Versioned read-through cache ---------------------------------------------------

# The versioned cache's scripts share one layout. KEYS: entry, stamp. ARGV: the row's
# version, the stamp's ttl ms, then (scripts that store) the entry's payload and ttl ms. The
# stamp is the version of the last committed write; an entry holds a row and its version.
_READ_STAMP = """
local stamp = tonumber(redis.call('GET', KEYS[2]) or '-1')
local version = tonumber(ARGV[1])
"""

# The stamp only moves forward.
_MOVE_STAMP = """
if version > stamp then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
"""

# The one rule of what may be stored: nothing older than the last committed write (the
# stamp, as read before any move) or than the entry already cached.
_STORE_UNLESS_OLDER = """
if version < stamp then return 0 end
local current = redis.call('GET', KEYS[1])
if current and tonumber(cjson.decode(current)['v']) > version then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
"""

# A row a reader loaded. A key with no stamp gets one, so a missing stamp means lost
# (evicted, failed over), never "no writes".
_FILL = (
    _READ_STAMP
    + _STORE_UNLESS_OLDER
    + """
if stamp == -1 then redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2]) end
return 1
"""
)

# A committed write, durably reported: an entry older than its version goes (one as new
# or newer is already right).
_INVALIDATE = (
    _READ_STAMP
    + _MOVE_STAMP
    + """
local current = redis.call('GET', KEYS[1])
if current and tonumber(cjson.decode(current)['v']) < version then
  redis.call('DEL', KEYS[1])
end
return 1
"""
)

# A committed write by this process: its row becomes the entry, unless a newer write is
# known.
_REPLACE = _READ_STAMP + _MOVE_STAMP + _STORE_UNLESS_OLDER + "return 1\n"


def _payload(version: int, data: Any) -> str:
    """An entry as Redis stores it (the scripts read its `v`)."""
    return json.dumps({"v": version, "d": data}, separators=(",", ":"))


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


# KEYS: lock. ARGV: owner token. Releases the fill lock only if it is still ours: a load
# that outlived the lock must not release another process's.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

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


class VersionedCache:
    """Two-layer read-through cache of JSON-able data keyed by a string id.

    `load` callables return `(version, data)` for an existing row or None for an absent
    one; versions must grow with every committed write of the row. See the module
    docstring for the rules.
    """

    instances: list[VersionedCache] = []

    def __init__(
        self,
        name: str,
        *,
        ttl: Callable[[], float],
        negative_ttl: Callable[[], float],
        local_ttl: Callable[[], float],
        local_max_entries: Callable[[], int],
    ) -> None:
        self.name = name
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._local_ttl = local_ttl
        self._local_max_entries = local_max_entries
        self._lock = threading.Lock()
        self._local: LRUCache[str, Entry] = LRUCache(maxsize=1)
        # Versions this process invalidated: a local fill of an older row is refused even
        # when Redis cannot be asked. Bounded like the entries.
        self._local_stamps: LRUCache[str, int] = LRUCache(maxsize=1)
        self._flights: dict[str, _Flight] = {}
        # Invalidations that could not reach Redis, replayed once it answers.
        self._pending: dict[str, int] = {}
        self.clear_local()
        VersionedCache.instances.append(self)

    # -- keys

    def _entry_key(self, key: str) -> str:
        return f"vc:{self.name}:e:{key}"

    def _stamp_key(self, key: str) -> str:
        return f"vc:{self.name}:s:{key}"

    def _lock_key(self, key: str) -> str:
        return f"vc:{self.name}:l:{key}"

    # -- local layer

    def clear_local(self) -> None:
        """Empty this process's layer (tests; settings changes)."""
        with self._lock:
            size = max(1, self._local_max_entries())
            self._local = LRUCache(maxsize=size)
            self._local_stamps = LRUCache(maxsize=size)
            self._pending.clear()

    def _local_get(self, key: str) -> Entry | None:
        """The local entry, if younger than its Redis twin's lifetime (TTL).

        Checked against the stamp in Redis it can be served at any such age: a stamp
        outlives every entry made before it. Unchecked, see `_servable_unchecked`.
        """
        with self._lock:
            entry = self._local.get(key)
            if entry is None:
                return None
            ttl = self._ttl() if entry.data is not None else self._negative_ttl()
            if time.monotonic() - entry.stored_at >= ttl:
                self._local.pop(key, None)
                return None
            return entry

    def _servable_unchecked(self, entry: Entry | None) -> bool:
        # Without Redis to check against, a local copy may miss another process's write:
        # USER_LOCAL_CACHE_TTL bounds for how long.
        return entry is not None and time.monotonic() - entry.stored_at < self._local_ttl()

    def _local_put(self, key: str, entry: Entry) -> bool:
        """Keep `entry` locally; False if this process knows a newer version was written."""
        with self._lock:
            if entry.version < self._local_stamps.get(key, -1):
                return False
            if self._local_ttl() > 0:
                self._local[key] = entry
            return True

    # -- reads

    def stamp_key(self, key: str) -> str:
        """The Redis key of `key`'s stamp, for a caller that fetches it with its own keys
        in one round trip and passes it to `get(stamp=...)`."""
        return self._stamp_key(key)

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

    def _resolve(self, key: str, load: Loader, stamp: Any) -> Any:
        self._replay_pending()
        local = self._local_get(key)
        client = shared_redis()
        if key in self._pending:
            # Redis may still hold this key's entry from before a write it could not be
            # told about: until the invalidation is delivered, Redis is not asked.
            client = None
        if client is None:
            if local is not None and self._servable_unchecked(local):
                CACHE_HITS.labels(self.name, "local").inc()
                return local.data
            CACHE_MISSES.labels(self.name, "local").inc()
            return self._load(key, load, client=None).data
        try:
            if local is not None:
                if stamp is NOT_FETCHED:
                    stamp = redis_guard.call(client.get, self._stamp_key(key))
                # No stamp: Redis lost it, so nothing vouches for the copy beyond the
                # bound that holds without Redis.
                if (stamp is None and self._servable_unchecked(local)) or (
                    stamp is not None and local.version >= int(stamp)
                ):
                    CACHE_HITS.labels(self.name, "local").inc()
                    return local.data
                with self._lock:
                    self._local.pop(key, None)
            CACHE_MISSES.labels(self.name, "local").inc()
            raw = redis_guard.call(client.get, self._entry_key(key))
        except RedisUnavailable:
            if local is not None and self._servable_unchecked(local):
                CACHE_HITS.labels(self.name, "local").inc()
                return local.data
            CACHE_MISSES.labels(self.name, "redis").inc()
            return self._load(key, load, client=None).data
        if raw is not None:
            CACHE_HITS.labels(self.name, "redis").inc()
            decoded = json.loads(raw)
            entry = Entry(version=decoded["v"], data=decoded["d"], stored_at=time.monotonic())
            self._local_put(key, entry)
            return entry.data
        CACHE_MISSES.labels(self.name, "redis").inc()
        return self._load(key, load, client=client).data

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
        token = uuid.uuid4().hex
        if client is not None and not connection.in_atomic_block:
            with contextlib.suppress(RedisUnavailable):
                timeout_ms = int(float(settings.CACHE_FILL_LOCK_TIMEOUT) * 1000)
                locked = redis_guard.call(
                    client.set, self._lock_key(key), token, nx=True, px=timeout_ms
                )
                if not locked:
                    waited = self._wait_for_fill(key, client)
                    if waited is not None:
                        return waited
                try:
                    return self._load_now(key, load, client=client)
                finally:
                    if locked:
                        with contextlib.suppress(RedisUnavailable):
                            redis_guard.call(
                                client.register_script(_UNLOCK),
                                keys=[self._lock_key(key)],
                                args=[token],
                            )
        return self._load_now(key, load, client=client)

    def _wait_for_fill(self, key: str, client: redis.Redis) -> Entry | None:
        """Another process holds the fill lock: poll for its entry, up to the lock's life."""
        deadline = time.monotonic() + float(settings.CACHE_FILL_LOCK_TIMEOUT)
        while time.monotonic() < deadline:
            time.sleep(0.005)
            raw = redis_guard.call(client.get, self._entry_key(key))
            if raw is not None:
                CACHE_HITS.labels(self.name, "redis").inc()
                decoded = json.loads(raw)
                entry = Entry(decoded["v"], decoded["d"], time.monotonic())
                self._local_put(key, entry)
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
            payload = _payload(entry.version, entry.data)
            try:
                accepted = redis_guard.call(
                    client.register_script(_FILL),
                    keys=[self._entry_key(key), self._stamp_key(key)],
                    args=[entry.version, self._stamp_ttl_ms(), payload, self._ttl_ms(entry.data)],
                )
            except RedisUnavailable:
                accepted = 1  # Redis cannot be asked; the local stamps still guard this process.
            if not accepted:
                CACHE_FILLS_REFUSED.labels(self.name).inc()
                return False
        return self._local_put(key, entry)

    # -- invalidation

    def replace_on_commit(self, key: str, *, version: int, data: Any) -> None:
        """After the current transaction commits (at once outside one), make `data` (the
        committed row at `version`) the cached value everywhere and refuse any later fill
        older than `version`: the next read finds the new value instead of loading it."""
        transaction.on_commit(lambda: self.replace(key, version=version, data=data), robust=True)

    def replace(self, key: str, *, version: int, data: Any) -> None:
        """Cache `data` at `version` here and in Redis; refuse older rows from now on."""
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
        payload = _payload(version, data)
        try:
            redis_guard.call(
                client.register_script(_REPLACE),
                keys=[self._entry_key(key), self._stamp_key(key)],
                args=[version, self._stamp_ttl_ms(), payload, self._ttl_ms(data)],
            )
        except RedisUnavailable:
            self._defer_invalidation(key, version)

    def _ttl_ms(self, data: Any) -> int:
        return max(1, int((self._ttl() if data is not None else self._negative_ttl()) * 1000))

    def _stamp_ttl_ms(self) -> int:
        return max(1, int(max(self._ttl(), self._negative_ttl()) * 1000))

    def invalidate_shared(self, key: str, *, version: int) -> None:
        """Drop `key` and stamp `version` in Redis now; raise RedisUnavailable if it is down.

        For a durable caller (an event handler) that retries until Redis takes it, rather
        than the deferral in process memory that `replace` falls back to.
        """
        client = shared_redis()
        if client is not None:
            self._invalidate_in_redis(client, key, version)

    def _invalidate_in_redis(self, client: redis.Redis, key: str, version: int) -> None:
        redis_guard.call(
            client.register_script(_INVALIDATE),
            keys=[self._entry_key(key), self._stamp_key(key)],
            args=[version, self._stamp_ttl_ms()],
        )

    def _send_invalidation(self, key: str, version: int) -> None:
        client = shared_redis()
        if client is None:
            return
        try:
            self._invalidate_in_redis(client, key, version)
        except RedisUnavailable:
            self._defer_invalidation(key, version)

    def _defer_invalidation(self, key: str, version: int) -> None:
        logger.warning("cache %s: invalidation of %s deferred (Redis down)", self.name, key)
        with self._lock:
            self._pending[key] = max(version, self._pending.get(key, -1))

    def _replay_pending(self) -> None:
        # While the breaker is open each attempt fails at once, without any I/O; one that
        # fails stays pending.
        if not self._pending:
            return
        with self._lock:
            pending, self._pending = self._pending, {}
        for key, version in pending.items():
            self._send_invalidation(key, version)
