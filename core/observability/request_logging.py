"""One structured log line per request, and a request id that follows the work around.

The request id comes from a well-formed `X-Request-ID` header (so a proxy or client can
correlate), else is generated; it is returned in the response's `X-Request-ID` and bound
in the logging context, so every line logged while serving the request carries it (and
Celery tasks published meanwhile carry it on: see core.observability.celery_logging).

Written here rather than with django-structlog: its middleware logs two lines per request
(started/finished) without the route template or the duration, takes any X-Request-ID as
given, and finds the client IP with django-ipware, whose proxy rules differ from DRF's
NUM_PROXIES (TRUSTED_PROXY_COUNT) that throttling uses; the log must name the same client.
"""

import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import structlog
from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject, empty
from rest_framework.throttling import BaseThrottle

REQUEST_ID_HEADER = "X-Request-ID"
# Long enough for any tracing id, short and plain enough to be safe in logs and headers.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,200}")

logger = structlog.get_logger("core.request")


def request_id_from(value: str | None) -> str:
    """The caller's request id if it is well formed, else a new one."""
    if value and _REQUEST_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


def current_request_id() -> str:
    """The id of the request (or task) being served in this context; "" outside any.

    For code that stores or forwards it (the events outbox records it with each event).
    """
    return str(structlog.contextvars.get_contextvars().get("request_id", ""))


def client_ip(request: HttpRequest) -> str:
    """The client's address, trusting X-Forwarded-For only as far as TRUSTED_PROXY_COUNT.

    DRF's throttles identify clients this way; reusing their code keeps the two in step.
    """
    return str(BaseThrottle().get_ident(request))  # type: ignore[arg-type]


class RequestLoggingMiddleware:
    """Bind the request's id and identity to the logging context; log one line at the end."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        """Serve the request inside its logging context, then log its outcome."""
        request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            request_id=request_id,
            method=request.method,
            path=request.path,
            client_ip=client_ip(request),
        )
        started = time.perf_counter()
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        status = response.status_code
        match = request.resolver_match
        log = logger.error if status >= 500 else logger.info
        log(
            "request",
            status=status,
            route=match.route if match else None,
            view=match.view_name if match else None,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
            user_id=_user_id(request),
            user_agent=request.headers.get("User-Agent", ""),
        )
        # The context stays bound until the next request clears it: Django logs 4xx and
        # 5xx responses (`django.request`) after the middleware chain has returned.
        return response


def _user_id(request: HttpRequest) -> str | None:
    # Only a user that authentication already loaded: resolving the lazy session user here
    # would cost a query the request itself did not need.
    user: Any = request.__dict__.get("user")
    if isinstance(user, SimpleLazyObject) and user.__dict__.get("_wrapped") is empty:
        return None
    if user is None or not user.is_authenticated:
        return None
    return str(user.pk)
