"""Database routing: writes to the primary, reads to a healthy replica, except where a
replica could answer with data older than what the client has already seen.

Reads go to the primary when
- no replica is configured, or none is admitted (see core.db.replicas);
- the primary connection is inside a transaction (a transaction sees its own writes);
- this context wrote recently: every write pins the context's reads to the primary for
  REPLICA_PIN_SECONDS (read-your-writes within a request, a task or a script);
- the client wrote recently: core.http.middleware.ReplicaPinMiddleware carries the pin
  between requests in a signed cookie, a response header the client echoes, or the user's
  record in the cache;
- code runs inside `use_primary()` (authentication, event handlers).

The routing state lives in context variables rather than thread-locals, so each request,
thread or asyncio task sees its own.
"""

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.db import connections
from prometheus_client import Counter

from core.db.replicas import ReplicaMonitor

PRIMARY = "default"
PIN_COOKIE = "primary_pin"
PIN_HEADER = "X-Primary-Pin"
# The module's old name, kept: a pin signed by the running release must stay
# readable by the next one while both serve during a deploy.
_PIN_SIGNER_SALT = "core.db_router.pin"
# Sessions are read on every request and written at login; a lagging copy would log
# people out, so they are never read from a replica.
PRIMARY_ONLY_APPS = frozenset({"sessions"})

ROUTED = Counter(
    "db_routed_total", "Queries routed, by operation and target.", ["operation", "target"]
)
PINNED_READS = Counter(
    "db_pinned_reads_total", "Reads sent to the primary by a pin, by reason.", ["reason"]
)

# Monotonic deadline until which this context reads from the primary.
_pinned_until: ContextVar[float] = ContextVar("pinned_until", default=0.0)
_force_primary: ContextVar[bool] = ContextVar("force_primary", default=False)
_wrote: ContextVar[bool] = ContextVar("wrote", default=False)
# A user whose recent-write pin (in the cache) is looked up only when a read would go to a
# replica: requests answered from the cache never pay for the lookup.
_unchecked_user_pin: ContextVar[Any] = ContextVar("unchecked_user_pin", default=None)

monitor = ReplicaMonitor()


def pin_reads_to_primary(seconds: float | None = None) -> None:
    """Send this context's reads to the primary for `seconds` (default REPLICA_PIN_SECONDS)."""
    window = settings.REPLICA_PIN_SECONDS if seconds is None else seconds
    deadline = time.monotonic() + window
    if deadline > _pinned_until.get():
        _pinned_until.set(deadline)


def pin_remaining() -> float:
    """Seconds this context's reads stay on the primary; 0 if not pinned."""
    return max(_pinned_until.get() - time.monotonic(), 0.0)


def wrote() -> bool:
    """Whether this context has routed a write since `reset()`."""
    return _wrote.get()


def reset() -> None:
    """Forget this context's pin and writes: each request starts afresh."""
    _pinned_until.set(0.0)
    _wrote.set(False)
    _unchecked_user_pin.set(None)


def sign_client_pin() -> str:
    """A signed pin for the client: echo it back and reads stay on the primary a while."""
    deadline = time.time() + settings.REPLICA_PIN_SECONDS
    return signing.Signer(salt=_PIN_SIGNER_SALT).sign(f"{deadline:.3f}")


def read_client_pin(value: str | None) -> float:
    """Seconds left on a pin the client sent back; 0 for none, expired or forged."""
    if not value:
        return 0.0
    try:
        deadline = float(signing.Signer(salt=_PIN_SIGNER_SALT).unsign(value))
    except (signing.BadSignature, ValueError):
        return 0.0
    # Never longer than a pin lasts, whatever the clocks of other servers said.
    return min(max(deadline - time.time(), 0.0), settings.REPLICA_PIN_SECONDS)


def remember_user_pin(user_id: Any) -> None:
    """Pin this user's reads, from any client, to the primary for REPLICA_PIN_SECONDS."""
    deadline = time.time() + settings.REPLICA_PIN_SECONDS
    cache.set(_user_pin_key(user_id), deadline, timeout=math.ceil(settings.REPLICA_PIN_SECONDS))


def apply_user_pin(user_id: Any) -> None:
    """Pin this context's reads if the user wrote recently (from whichever client).

    Deferred: the pin is looked up in the cache before this context's first replica read.
    """
    if settings.REPLICA_DATABASES:
        _unchecked_user_pin.set(user_id)


def _check_user_pin() -> None:
    user_id = _unchecked_user_pin.get()
    if user_id is None:
        return
    _unchecked_user_pin.set(None)
    deadline = cache.get(_user_pin_key(user_id))
    if deadline is not None and deadline > time.time():
        pin_reads_to_primary(deadline - time.time())


def _user_pin_key(user_id: Any) -> str:
    return f"db-router:user-pin:{user_id}"


def replicas_with_errors() -> list[str]:
    """Replicas whose connection in this thread has just failed."""
    return [alias for alias in settings.REPLICA_DATABASES if connections[alias].errors_occurred]


@contextmanager
def use_primary() -> Iterator[None]:
    """Read from the primary inside this block, whatever else applies."""
    token = _force_primary.set(True)
    try:
        yield
    finally:
        _force_primary.reset(token)


def _primary_reason(model: Any) -> str | None:
    if model._meta.app_label in PRIMARY_ONLY_APPS:
        return "primary_only"
    if _force_primary.get():
        return "forced"
    if connections[PRIMARY].in_atomic_block:
        return "transaction"
    _check_user_pin()
    if _pinned_until.get() > time.monotonic():
        return "pinned"
    return None


class ReplicaRouter:
    """Django database router implementing the rules in this module's docstring."""

    def db_for_read(self, model: Any, **hints: Any) -> str:
        """A replica when one is admitted and nothing pins this read to the primary."""
        if not settings.REPLICA_DATABASES:
            return PRIMARY
        reason = _primary_reason(model)
        if reason is not None:
            PINNED_READS.labels(reason).inc()
            ROUTED.labels("read", "primary").inc()
            return PRIMARY
        replica = monitor.choose()
        ROUTED.labels("read", "primary" if replica is None else "replica").inc()
        return replica or PRIMARY

    def db_for_write(self, model: Any, **hints: Any) -> str:
        """Always the primary; the write pins this context's later reads there too."""
        _wrote.set(True)
        pin_reads_to_primary()
        ROUTED.labels("write", "primary").inc()
        return PRIMARY

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        """Replicas hold the same data as the primary, so any relation is allowed."""
        return True

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        """Only the primary is migrated; replicas receive the schema by replication."""
        return db == PRIMARY
