"""What of users is cached, under which keys, and when it is invalidated.

Two caches, both on core.cache:

* The user cache: a user's API representation (what `UserSerializer` renders) plus the
  one internal flag needed to rebuild the authenticated principal (`is_superuser`),
  keyed by id and versioned by `updated_at`. Readers check visibility first
  (users.selectors) and only then read it.
* The token cache: knox token digest -> (user id, expiry), in Redis only. Only the
  digest (knox's SHA-512 of the token) is a key, never the token. It has no local
  layer because a revoked token must stop working in every process at once; revocation
  writes a tombstone that a racing fill (`SET NX`) cannot overwrite.

The services call the `*_on_commit` functions for every write, so nothing is
invalidated before the data is committed, and a rolled-back write invalidates nothing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from cachetools import LRUCache
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from knox.models import AuthToken

from core.cache import (
    CACHE_HITS,
    CACHE_MISSES,
    NOT_FETCHED,
    RedisUnavailable,
    VersionedCache,
    redis_guard,
    shared_redis,
)
from core.db_router import PRIMARY
from users.api.serializers import UserSerializer
from users.models import User

user_cache = VersionedCache(
    "user",
    ttl=lambda: float(settings.USER_CACHE_TTL),
    negative_ttl=lambda: float(settings.USER_NEGATIVE_CACHE_TTL),
    local_ttl=lambda: float(settings.USER_LOCAL_CACHE_TTL),
    local_max_entries=lambda: int(settings.USER_LOCAL_CACHE_MAX_ENTRIES),
)


def user_version(user: User) -> int:
    """The version of a user row: `updated_at` in microseconds (every save moves it)."""
    return int(user.updated_at.timestamp() * 1_000_000)


def _entry(user: User) -> dict[str, Any]:
    return {"user": dict(UserSerializer(user).data), "is_superuser": user.is_superuser}


def _load(user_id: UUID, latest: bool = False) -> tuple[int, dict[str, Any]] | None:
    users = User.objects.all()
    if latest:
        # The primary holds the newest committed row, whatever reads use. Named directly:
        # asking the router for the write database would count this read as a write.
        users = users.using(PRIMARY)
    user = users.filter(pk=user_id).first()
    return None if user is None else (user_version(user), _entry(user))


def user_entry_get(user_id: UUID, *, stamp: Any = NOT_FETCHED) -> dict[str, Any] | None:
    """The cached entry of a user (`user` representation, `is_superuser`), None if absent.

    No permission check here: callers decide visibility first (users.selectors). `stamp`:
    the entry's stamp if the caller has just read it (see `auth_token_get`).
    """
    return user_cache.get(str(user_id), lambda latest: _load(user_id, latest), stamp=stamp)


def user_cache_prime(user: User) -> bool:
    """Cache a user row the caller has just read; False if a newer write is known."""
    return user_cache.prime(str(user.pk), user_version(user), _entry(user))


def user_cache_refresh_on_commit(user: User) -> None:
    """After commit, make this (committed) row the cached user everywhere and refuse any
    older row later: the next read needs no query."""
    user_cache.replace_on_commit(str(user.pk), version=user_version(user), data=_entry(user))


def user_cache_invalidate_from_event(*, user_id: str, updated_at: str) -> None:
    """Drop the cached user in Redis for a committed change an event reports.

    The writing process invalidates after commit, but if Redis was down then, it can only
    keep that in its memory, lost if it exits. The event is durable (the outbox): its
    handler repeats the invalidation until Redis takes it. Raises RedisUnavailable.
    """
    version = int(datetime.fromisoformat(updated_at).timestamp() * 1_000_000)
    user_cache.invalidate_shared(user_id, version=version)


def principal_from_entry(entry: dict[str, Any]) -> User:
    """A read-only User built from a cache entry, for `request.user`.

    It carries no password hash and no relations: writes load the row from the database
    (views call the selectors, then the services), never save this object.
    """
    data = entry["user"]
    user = User(
        id=UUID(data["id"]),
        email=data["email"],
        display_name=data["display_name"],
        is_active=data["is_active"],
        is_staff=data["is_staff"],
        is_superuser=entry["is_superuser"],
        date_joined=_datetime(data["date_joined"]),
        updated_at=_datetime(data["updated_at"]),
    )
    user._state.adding = False
    user._state.db = "default"
    return user


def _datetime(value: str) -> datetime:
    parsed = parse_datetime(value)
    if parsed is None:
        raise ValueError(f"not a datetime: {value!r}")
    return parsed


# --- Tokens -------------------------------------------------------------------------

_REVOKED = b"revoked"


def _token_key(digest: str) -> str:
    return f"auth:token:{digest}"


class TokenRevoked(Exception):
    """The token was revoked: refuse it without asking the database."""


def auth_token_get(digest: str) -> tuple[AuthToken, Any] | None:
    """The cached token with this digest (its `user` not loaded), or None on a miss.

    With it, the raw stamp of its user's cache entry (`user_entry_get(stamp=...)`): when
    this process has seen the token before, it knows the user and reads both in one round
    trip; else `NOT_FETCHED`. Raises TokenRevoked for a revoked token and RedisUnavailable
    when Redis cannot answer.
    """
    client = shared_redis()
    if client is None:
        raise RedisUnavailable("no shared cache configured")
    replay_pending_tombstones()
    key = _token_key(digest)
    if key in _pending_tombstones:
        raise TokenRevoked(digest)
    with _token_users_lock:
        user_id = _token_users.get(digest)
    stamp = NOT_FETCHED
    if user_id is None:
        raw = redis_guard.call(client.get, key)
    else:
        raw, stamp = redis_guard.call(client.mget, [key, user_cache.stamp_key(str(user_id))])
    if raw is None:
        CACHE_MISSES.labels("token", "redis").inc()
        return None
    CACHE_HITS.labels("token", "redis").inc()
    if raw == _REVOKED:
        raise TokenRevoked(digest)
    data = json.loads(raw)
    token = AuthToken(
        digest=digest,
        token_key=data["key"],
        user_id=UUID(data["user"]),
        created=_datetime(data["created"]),
        expiry=_datetime(data["expiry"]) if data["expiry"] else None,
    )
    token._state.adding = False
    token._state.db = "default"
    if user_id is None:
        with _token_users_lock:
            _token_users[digest] = token.user_id
    return token, stamp


# Token digest -> its user's id, which never changes: known, it lets a request read the
# token and its user's stamp together. Not a cache of the token: Redis still answers
# whether the token is valid, on every request.
_token_users: LRUCache[str, UUID] = LRUCache(maxsize=10_000)
_token_users_lock = threading.Lock()


def auth_token_remember(token: AuthToken) -> None:
    """Cache a token just verified against the database, unless it was revoked meanwhile.

    `SET NX`: a revocation's tombstone, written after its commit, wins over this fill.
    """
    client = shared_redis()
    if client is None or connection.in_atomic_block:
        return
    ttl = float(settings.AUTH_TOKEN_CACHE_TTL)
    if token.expiry is not None:
        ttl = min(ttl, (token.expiry - timezone.now()).total_seconds())
    if ttl <= 0:
        return
    payload = json.dumps(
        {
            "user": str(token.user_id),
            "key": token.token_key,
            "created": token.created.isoformat(),
            "expiry": token.expiry.isoformat() if token.expiry else None,
        }
    )
    try:
        redis_guard.call(client.set, _token_key(token.digest), payload, nx=True, px=int(ttl * 1000))
    except RedisUnavailable:
        return


def auth_tokens_forget_on_commit(digests: Iterable[str]) -> None:
    """After commit, tombstone these tokens so no process accepts them from the cache."""
    keys = [_token_key(digest) for digest in digests]
    if keys:
        transaction.on_commit(lambda: _tombstone(keys), robust=True)


def _tombstone(keys: list[str]) -> None:
    client = shared_redis()
    if client is None:
        return
    # Outlives any entry a racing fill could have written before the tombstone.
    ttl_ms = int(float(settings.AUTH_TOKEN_CACHE_TTL) * 1000) + 1000

    def write() -> None:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.set(key, _REVOKED, px=ttl_ms)
        pipe.execute()

    try:
        redis_guard.call(write)
    except RedisUnavailable:
        # The principal check still refuses deactivated users; a logout or password
        # change made during an outage may let its old tokens through from a cached entry
        # for at most AUTH_TOKEN_CACHE_TTL (entries written before the outage).
        _pending_tombstones.update(keys)


_pending_tombstones: set[str] = set()


def replay_pending_tombstones() -> None:
    """Write tombstones that an outage deferred, once Redis answers again."""
    if not _pending_tombstones:
        return
    keys = list(_pending_tombstones)
    _pending_tombstones.difference_update(keys)
    _tombstone(keys)
