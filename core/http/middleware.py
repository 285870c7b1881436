"""Request middleware shared by every app."""

import functools
from collections.abc import Callable
from typing import Any

from csp import middleware as csp_middleware
from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.utils import build_policy
from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.signals import setting_changed
from django.db import InterfaceError, OperationalError, connections
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.deprecation import MiddlewareMixin
from knox.settings import knox_settings
from rest_framework.authentication import get_authorization_header

from core.db import router as db_router
from core.http.exceptions import database_unavailable, error_response

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Every view under this prefix is a DRF view whose first authenticator is the token's.
API_PREFIX = "/api/"


class RequestBodyLimitMiddleware:
    """Refuse bodies larger than MAX_REQUEST_BODY_BYTES with 413 before anything reads them.

    Django's DATA_UPLOAD_MAX_MEMORY_SIZE only guards `request.body`; DRF's parsers read
    the raw stream and would parse a body of any size, so the limit is enforced here on
    the declared Content-Length (the WSGI server never hands over more than that).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        """Answer 413 for an oversized or unreadable Content-Length, else pass on."""
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response(
                status=400, code="bad_request", message="Invalid Content-Length header."
            )
        if length > settings.MAX_REQUEST_BODY_BYTES:
            return error_response(
                status=413,
                code="payload_too_large",
                message=f"Request body exceeds {settings.MAX_REQUEST_BODY_BYTES} bytes.",
            )
        return self.get_response(request)


class ReplicaPinMiddleware:
    """Read-your-writes across requests, and a second chance for reads a replica failed.

    - A request that writes gets a signed pin back, as a cookie (browsers) and in the
      X-Primary-Pin header (API clients echo it); while the pin is valid the client's reads
      use the primary. Authenticated users are also pinned by id in the cache, for clients
      that echo nothing (see `db_router.remember_user_pin`).
    - Requests with unsafe methods read from the primary: what they write must not be
      based on a stale read.
    - A safe request whose read fails on a replica with a connection error is run once
      more on the primary (it has written nothing, so running it again is harmless) and
      the replica is taken out of rotation.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        """Apply the client's pin, serve the request, hand out a pin if it wrote."""
        db_router.reset()
        client_pin = db_router.read_client_pin(
            request.COOKIES.get(db_router.PIN_COOKIE) or request.headers.get(db_router.PIN_HEADER)
        )
        if client_pin:
            db_router.pin_reads_to_primary(client_pin)
        if request.method in SAFE_METHODS:
            response = self.get_response(request)
        else:
            with db_router.use_primary():
                response = self.get_response(request)
        if db_router.wrote():
            self._hand_out_pin(request, response)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Retry a safe request on the primary after a replica failed; 503 if the primary did."""
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        failed = db_router.replicas_with_errors()
        for alias in failed:
            db_router.monitor.mark_down(alias, reason="query_error")
            connections[alias].close()
        if not failed or request.method not in SAFE_METHODS or db_router.wrote():
            return database_unavailable()
        match = request.resolver_match
        if match is None:
            return database_unavailable()
        try:
            with db_router.use_primary():
                return match.func(request, *match.args, **match.kwargs)
        except (OperationalError, InterfaceError):
            return database_unavailable()

    @staticmethod
    def _hand_out_pin(request: HttpRequest, response: HttpResponse) -> None:
        value = db_router.sign_client_pin()
        response[db_router.PIN_HEADER] = value
        response.set_cookie(
            db_router.PIN_COOKIE,
            value,
            max_age=int(settings.REPLICA_PIN_SECONDS) + 1,
            secure=settings.SESSION_COOKIE_SECURE,
            httponly=True,
            samesite="Lax",
        )
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            db_router.remember_user_pin(user.pk)


# What django-csp's decorators leave on a response that has a policy of its own.
_RESPONSE_POLICY_ATTRIBUTES = tuple(
    f"_csp_{kind}{suffix}"
    for kind in ("exempt", "config", "update", "replace")
    for suffix in ("", "_ro")
)


class CSPMiddleware(csp_middleware.CSPMiddleware):
    """django-csp's middleware, with the settings' policy built once per process.

    django-csp 4 builds both headers from the settings on every response (a copy of every
    directive, then the string): about 8% of a warm API read's CPU, and it has no option
    to keep them. The settings do not change while a process runs, so neither do the
    headers. A response with a policy of its own (django-csp's decorators) or a request
    that used a nonce still goes through django-csp's own code.
    """

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        """The settings' headers, unless this response or request customised its policy."""
        if getattr(request, "_csp_nonce", None) is not None or any(
            hasattr(response, name) for name in _RESPONSE_POLICY_ATTRIBUTES
        ):
            return super().process_response(request, response)
        if settings.DEBUG and response.status_code in (404, 500):
            # As django-csp: Django's debug pages have inline script and style.
            return response
        for header, policy, excluded_prefixes in _settings_policies():
            if (
                policy
                and header not in response
                and not request.path_info.startswith(excluded_prefixes)
            ):
                response[header] = policy
        # As django-csp: a nonce asked for after the header is written is an error.
        request.csp_nonce = csp_middleware.CheckableLazyObject(  # type: ignore[attr-defined]
            self._csp_nonce_post_response
        )
        return response


@functools.cache
def _settings_policies() -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    # (header, policy, excluded path prefixes), as django-csp builds them from the settings.
    policies = []
    for header, setting, report_only in (
        (HEADER, "CONTENT_SECURITY_POLICY", False),
        (HEADER_REPORT_ONLY, "CONTENT_SECURITY_POLICY_REPORT_ONLY", True),
    ):
        config: dict[str, Any] = getattr(settings, setting, None) or {}
        prefixes = tuple(config.get("EXCLUDE_URL_PREFIXES") or ())
        policies.append((header, build_policy(report_only=report_only), prefixes))
    return tuple(policies)


@receiver(setting_changed)
def _csp_settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("CONTENT_SECURITY_POLICY"):
        _settings_policies.cache_clear()


def authenticates_with_token(request: HttpRequest) -> bool:
    """True for an API request whose credentials are a bearer token.

    Such a request never uses a session: the token authenticator (knox's, first in every
    API view) claims any `Authorization` header whose scheme is its prefix, and either
    accepts the token or refuses the request, so no view under API_PREFIX falls back to
    the session. The header is split as DRF and knox split it.
    """
    if not request.path_info.startswith(API_PREFIX):
        return False
    words = get_authorization_header(request).split()  # type: ignore[arg-type]
    prefix = str(knox_settings.AUTH_HEADER_PREFIX).encode()
    return bool(words) and words[0].lower() == prefix.lower()


class _SkippedForTokenRequests(MiddlewareMixin):
    """Steps aside for token-authenticated API requests (`authenticates_with_token`).

    Sessions, the session user and messages serve browsers (the admin, the browsable API
    logged in with a session); for a bearer-token request they would build objects that
    nothing reads, on every request. What protects such a request (its token, the
    security headers, CSRF's checks, which stay in the stack) is unchanged.
    """

    def __call__(self, request: HttpRequest) -> Any:
        """Pass a token-authenticated API request straight on; anything else as usual."""
        if authenticates_with_token(request):
            return self.get_response(request)
        return super().__call__(request)


class BrowserSessionMiddleware(_SkippedForTokenRequests, SessionMiddleware):
    """Django's SessionMiddleware, skipped for token-authenticated API requests."""


class BrowserAuthenticationMiddleware(_SkippedForTokenRequests, AuthenticationMiddleware):
    """Django's AuthenticationMiddleware (the session's user), skipped for token requests.

    DRF sets `request.user` itself once the token has authenticated the request.
    """


class BrowserMessageMiddleware(_SkippedForTokenRequests, MessageMiddleware):
    """Django's MessageMiddleware, skipped for token-authenticated API requests."""
