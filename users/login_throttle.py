"""Failed-login back-off, shared by the API's token endpoint and the admin's login.

A fixed per-email limit is a lockout anyone can trigger: five wrong passwords a minute for
someone else's email kept its owner out. The limits here are built so that one attacker
address cannot do that, while guessing stays slow (OWASP Authentication Cheat Sheet,
"Login Throttling" and "Account Lockout": count failures, back off exponentially rather
than lock, and key the counters so an attacker cannot lock a victim out):

- per client IP, whatever the email: every attempt counts (`THROTTLE_LOGIN_IP_RATE`,
  DRF's throttle; `users.api.throttles.LoginIPThrottle`);
- per client IP and email: after LOGIN_FREE_FAILURES_PER_CLIENT failures in
  LOGIN_FAILURE_WINDOW_SECONDS, each further attempt from that client for that email waits
  LOGIN_BACKOFF_BASE_SECONDS, doubling with each failure, up to LOGIN_BACKOFF_MAX_SECONDS.
  The owner, at another address, is not affected;
- per email, from everywhere: the same back-off after LOGIN_FREE_FAILURES_PER_EMAIL
  failures, far more than one client can reach inside the window under its own back-off,
  so it only ever slows a guessing campaign spread over many addresses.

Only failures count towards the back-off, and a successful login clears its client's
count. The counters live in the Django cache (Redis, shared by every process; a
per-process fallback while Redis is down, as for every throttle).
"""

import hashlib
import time
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.dispatch import receiver
from django.http import HttpRequest
from rest_framework.throttling import BaseThrottle

from core.cache.backend import count_in_window
from users.models import normalize_email

_PREFIX = "login-failures"


def now() -> float:
    """The clock the back-off reads (tests move it instead of sleeping)."""
    return time.time()


def client_ip(request: HttpRequest) -> str:
    """The client address as every throttle sees it (honours TRUSTED_PROXY_COUNT)."""
    return str(BaseThrottle().get_ident(request))  # type: ignore[arg-type]


def _counters(*, ip: str, email: str) -> list[tuple[str, int]]:
    """(cache key, free failures) of each counter an attempt is measured against."""
    email_id = hashlib.sha256(normalize_email(email).encode()).hexdigest()
    client_id = hashlib.sha256(f"{ip}\n{email_id}".encode()).hexdigest()
    return [
        (f"{_PREFIX}:client:{client_id}", settings.LOGIN_FREE_FAILURES_PER_CLIENT),
        (f"{_PREFIX}:email:{email_id}", settings.LOGIN_FREE_FAILURES_PER_EMAIL),
    ]


def backoff_seconds(excess_failures: int) -> float:
    """The wait after the `excess_failures`-th failure past the free ones (from 1)."""
    exponent = min(max(excess_failures - 1, 0), 32)
    wait = settings.LOGIN_BACKOFF_BASE_SECONDS * 2**exponent
    return float(min(wait, settings.LOGIN_BACKOFF_MAX_SECONDS))


def login_wait(*, request: HttpRequest, email: str) -> float | None:
    """Seconds this client must wait before trying `email` again, or None. Counts nothing."""
    waits = []
    for key, free in _counters(ip=client_ip(request), email=email):
        stored = cache.get_many([f"{key}:n", f"{key}:t"])
        failures = int(stored.get(f"{key}:n") or 0)
        if failures < free:
            continue
        last_failure = float(stored.get(f"{key}:t") or 0.0)
        remaining = last_failure + backoff_seconds(failures - free + 1) - now()
        if remaining > 0:
            waits.append(remaining)
    return max(waits) if waits else None


def login_failed(*, request: HttpRequest, email: str) -> None:
    """Count a failed attempt against every counter, and when it happened."""
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    for key, _free in _counters(ip=client_ip(request), email=email):
        count_in_window(f"{key}:n", seconds=window)
        cache.set(f"{key}:t", now(), window)


@receiver(user_login_failed)
def _count_failed_login(
    sender: object, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    """Every failed `authenticate()` with a request counts, through whichever door it came."""
    email = credentials.get("username")
    if request is not None and isinstance(email, str) and email:
        login_failed(request=request, email=email)


@receiver(user_logged_in)
def _clear_after_session_login(
    sender: object, request: HttpRequest | None, user: Any, **kwargs: Any
) -> None:
    """A session login (the admin's) clears its client's count, as a token login does."""
    if request is not None:
        login_succeeded(request=request, email=user.email)


def login_succeeded(*, request: HttpRequest, email: str) -> None:
    """Clear this client's count for the email; the email's global count stays."""
    client_key, _free = _counters(ip=client_ip(request), email=email)[0]
    cache.delete_many([f"{client_key}:n", f"{client_key}:t"])
