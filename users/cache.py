"""What of users is cached, under which keys, and when it is invalidated.

Two caches, both on core.cache.backend:

* The user cache: a user record built here (the public fields the API shows, plus
  `is_superuser` to rebuild the authenticated principal), keyed by id, versioned by the
  row's `version` (incremented under the row lock by every write: commit order, whatever
  the clocks say). Its shape is `USER_CACHE_SCHEMA`: a release that changes the shape
  bumps it, and the two colours of a blue-green release never read each other's
  entries (they share the stamps, so a write by either is seen by both). Readers check
  visibility first (users.selectors) and only then read it.
* The token cache: knox token digest -> (user id, expiry), in Redis only; only the
  digest (knox's SHA-512 of the token) is a key, never the token. A revocation marks the
  digest in Redis *before* the token row is deleted (`auth_tokens_revoke`), so no
  process can accept a revoked token from the cache, and a racing fill (`SET NX`)
  cannot overwrite the mark. Its key and value format are shared by every release.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import redis
from cachetools import LRUCache
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from knox.models import AuthToken
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.cache.backend import (
    CACHE_HITS,
    CACHE_MISSES,
    NOT_FETCHED,
    REDIS_DOWN_ERRORS,
    UNDECODABLE_VALUES,
    RedisUnavailable,
    VersionedCache,
    shared_redis,
)
from core.db.router import PRIMARY
from users.models import CachedPrincipal, User

# The shape of a cached user (`_record`). Bump it with any change to that shape.
USER_CACHE_SCHEMA = "2"

user_cache = VersionedCache(
    "user",
    schema=USER_CACHE_SCHEMA,
    ttl=lambda: float(settings.USER_CACHE_TTL),
    negative_ttl=lambda: float(settings.USER_NEGATIVE_CACHE_TTL),
    local_ttl=lambda: float(settings.USER_LOCAL_CACHE_TTL),
    local_max_entries=lambda: int(settings.USER_LOCAL_CACHE_MAX_ENTRIES),
)


def user_version(user: User) -> int:
    """The version of a user row: its `version` column (every write increments it)."""
    return int(user.version)


def _timestamp(value: datetime) -> str:
    # ISO 8601 in UTC with a `Z`, as the API renders timestamps.
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


# The public fields of a user: what the API shows, and the columns a page reads.
USER_REPRESENTATION_FIELDS = (
    "id",
    "email",
    "display_name",
    "is_active",
    "is_staff",
    "date_joined",
    "updated_at",
)


def user_representation(user: User) -> dict[str, Any]:
    """The public fields of a user, in the form the API shows them (UserSerializer's)."""
    return user_row_representation(
        {field: getattr(user, field) for field in USER_REPRESENTATION_FIELDS}
    )


def user_row_representation(row: Mapping[str, Any]) -> dict[str, Any]:
    """`user_representation` of a row read with `.values(*USER_REPRESENTATION_FIELDS)`.

    For pages of users: a row costs a fraction of a model instance to build.
    """
    return {
        "id": str(row["id"]),
        "email": row["email"],
        "display_name": row["display_name"],
        "is_active": row["is_active"],
        "is_staff": row["is_staff"],
        "date_joined": _timestamp(row["date_joined"]),
        "updated_at": _timestamp(row["updated_at"]),
    }


def _record(user: User) -> dict[str, Any]:
    """A user as the cache holds it (schema USER_CACHE_SCHEMA): the public fields, in the
    form the API shows them, and the one internal flag the principal needs."""
    return {
        "user": user_representation(user),
        "is_superuser": user.is_superuser,
        "version": user_version(user),
    }


def user_cache_load(user_id: UUID, latest: bool = False) -> tuple[int, dict[str, Any]] | None:
    """The user cache's loader: the row's version and its cached record, None if absent.

    What `user_entry_get` gives `user_cache.get` to fill a miss; `latest` reads the
    primary, as the cache asks after refusing a fill older than a known write. Public so
    that a test racing a fill wraps the real loader rather than a copy of it.
    """
    users = User.objects.all()
    if latest:
        # The primary holds the newest committed row, whatever reads use. Named directly:
        # asking the router for the write database would count this read as a write.
        users = users.using(PRIMARY)
    user = users.filter(pk=user_id).first()
    return None if user is None else (user_version(user), _record(user))


def user_entry_get(user_id: UUID, *, stamp: Any = NOT_FETCHED) -> dict[str, Any] | None:
    """The cached record of a user (`user`: the public fields; `is_superuser`; `version`),
    None if absent.

    No permission check here: callers decide visibility first (users.selectors). `stamp`:
    the entry's stamp if the caller has just read it (see `auth_token_get`).
    """
    return user_cache.get(
        str(user_id), lambda latest: user_cache_load(user_id, latest), stamp=stamp
    )


def user_cache_prime(user: User) -> bool:
    """Cache a user row the caller has just read; False if a newer write is known."""
    return user_cache.prime(str(user.pk), user_version(user), _record(user))


def user_cache_refresh_on_commit(user: User) -> None:
    """After commit, make this (committed) row the cached user everywhere and refuse any
    older row later: the next read needs no query."""
    user_cache.replace_on_commit(str(user.pk), version=user_version(user), data=_record(user))


def user_cache_invalidate_from_events(*, user_ids: Sequence[str]) -> None:
    """Stop Redis serving any cached copy of these users older than their committed rows.

    The writing process refreshes the cache after commit, but if Redis was down then,
    only that process knows. The event is durable (the outbox): its handler repeats this
    until Redis takes it. The versions are read from the primary, in one query: the
    newest committed one is at least the event's, and moving the stamp to it is as
    right. One round trip to Redis for all of them. Raises RedisUnavailable.
    """
    versions = User.objects.using(PRIMARY).filter(pk__in=user_ids).values_list("pk", "version")
    user_cache.advance_many({str(pk): version for pk, version in versions})


def principal_from_entry(entry: dict[str, Any]) -> CachedPrincipal:
    """The authenticated principal built from a cache record, for `request.user`.

    A CachedPrincipal: it carries no password hash and refuses to be saved, so a stray
    `request.user.save()` can never blank the stored hash. Writes load the row from the
    database (views call the selectors, then the services).
    """
    data = entry["user"]
    user = CachedPrincipal(
        id=UUID(data["id"]),
        email=data["email"],
        display_name=data["display_name"],
        is_active=data["is_active"],
        is_staff=data["is_staff"],
        is_superuser=entry["is_superuser"],
        date_joined=_datetime(data["date_joined"]),
        updated_at=_datetime(data["updated_at"]),
        version=entry["version"],
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

# The token cache's values. Shared by every release, so they never change meaning: a
# reader takes anything it does not understand for a miss (the database decides).
_REVOKED = b"revoked"
# Written before a revocation commits: "ask the database". Safe whether or not the
# revocation then commits, and no fill can replace it (`SET NX`).
_UNVERIFIED = b"unverified"


def _token_key(digest: str) -> str:
    return f"auth:token:{digest}"


class TokenRevoked(Exception):
    """The token was revoked: refuse it without asking the database."""


class RevocationNotRecorded(Exception):
    """Redis could not record a revocation in time; the caller must not revoke."""


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
    key = _token_key(digest)
    with _token_users_lock:
        user_id = _token_users.get(digest)
    stamp = NOT_FETCHED
    if user_id is None:
        raw = client.get(key)
    else:
        raw, stamp = client.mget([key, user_cache.stamp_key(str(user_id))])
    if raw == _REVOKED:
        raise TokenRevoked(digest)
    token = None if raw is None or raw == _UNVERIFIED else _decode_token(digest, raw)
    if token is None:
        CACHE_MISSES.labels("token", "redis").inc()
        return None
    CACHE_HITS.labels("token", "redis").inc()
    if user_id is None:
        with _token_users_lock:
            _token_users[digest] = token.user_id
    return token, stamp


def _decode_token(digest: str, raw: bytes | str) -> AuthToken | None:
    try:
        data = json.loads(raw)
        token = AuthToken(
            digest=digest,
            token_key=data["key"],
            user_id=UUID(data["user"]),
            created=_datetime(data["created"]),
            expiry=_datetime(data["expiry"]) if data["expiry"] else None,
        )
    except (ValueError, TypeError, KeyError):
        # Not what this code writes: a miss, so the database decides.
        UNDECODABLE_VALUES.inc()
        return None
    token._state.adding = False
    token._state.db = "default"
    return token


# Token digest -> its user's id, which never changes: known, it lets a request read the
# token and its user's stamp together. Not a cache of the token: Redis still answers
# whether the token is valid, on every request.
_token_users: LRUCache[str, UUID] = LRUCache(maxsize=10_000)
_token_users_lock = threading.Lock()


def auth_token_remember(token: AuthToken) -> None:
    """Cache a token just verified against the database, unless it was revoked meanwhile.

    `SET NX`: a revocation's mark, written before its commit, wins over this fill.
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
        client.set(_token_key(token.digest), payload, nx=True, px=int(ttl * 1000))
    except RedisUnavailable:
        return


def auth_tokens_revoke(digests: Iterable[str]) -> None:
    """Mark these tokens in Redis before their rows are deleted; call inside the
    transaction that deletes them.

    Once the delete commits, the database refuses the tokens; the mark makes every
    process ask it instead of trusting a cached copy, now and after any Redis stall. If
    Redis cannot take the mark within AUTH_REVOCATION_TIMEOUT, this raises
    RevocationNotRecorded (the API answers 503) and the transaction rolls back: a
    revocation is never reported done while a cached copy could still be accepted. After
    commit the marks become tombstones, which refuse the tokens without a query.
    """
    keys = [_token_key(digest) for digest in digests]
    if not keys or shared_redis() is None:
        return
    _mark_or_fail(keys)
    transaction.on_commit(lambda: _tombstone(keys), robust=True)


def _ttl_ms() -> int:
    # Outlives any entry a racing fill could have written before the mark.
    return int(float(settings.AUTH_TOKEN_CACHE_TTL) * 1000) + 1000


def _mark_or_fail(keys: list[str]) -> None:
    # Past the breaker, with a socket timeout as long as the whole budget: a Redis that
    # holds writes (CLIENT PAUSE, a failover) answers when it resumes, and this waits
    # for it. Retries cover a refused or reset connection.
    deadline = time.monotonic() + float(settings.AUTH_REVOCATION_TIMEOUT)
    client = _revocation_client()
    while True:
        try:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.set(key, _UNVERIFIED, px=_ttl_ms())
            pipe.execute()
            return
        except REDIS_DOWN_ERRORS as exc:
            if time.monotonic() >= deadline:
                raise RevocationNotRecorded(str(exc)) from exc
            time.sleep(0.05)


_revocation_clients: dict[tuple[str, float], redis.Redis] = {}


def _revocation_client() -> redis.Redis:
    """A plain redis-py client on the cache's Redis, its timeouts the revocation budget."""
    url = str(settings.CACHES["default"]["LOCATION"])
    budget = float(settings.AUTH_REVOCATION_TIMEOUT)
    client = _revocation_clients.get((url, budget))
    if client is None:
        client = redis.Redis.from_url(
            url,
            socket_timeout=budget,
            socket_connect_timeout=min(budget, 1.0),
            retry=Retry(NoBackoff(), 0),
        )
        _revocation_clients[(url, budget)] = client
    return client


def _tombstone(keys: list[str]) -> None:
    client = shared_redis()
    if client is None:
        return
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.set(key, _REVOKED, px=_ttl_ms())
    # Best effort: the marks already keep the tokens from being accepted from the cache.
    try:
        pipe.execute()
    except RedisUnavailable:
        return
