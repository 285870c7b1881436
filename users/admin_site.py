"""The admin site, with its login form throttled exactly like the API's token endpoint.

The admin login is a password check like `POST /api/v1/auth/token/`, so it gets the same
limits (THROTTLE_LOGIN_IP_RATE per client IP, THROTTLE_LOGIN_EMAIL_RATE per email) and
counts against the same counters: alternating between the two doors buys an attacker
nothing. The counters are DRF's (SimpleRateThrottle, kept in Django's cache), reused here
rather than re-implemented.
"""

import math
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from rest_framework.throttling import SimpleRateThrottle

from users.api.throttles import LoginEmailThrottle, LoginIPThrottle


class AdminLoginEmailThrottle(LoginEmailThrottle):
    """Admin login attempts per email; shares the API login's counter."""

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        """Key by the email typed into the admin's login form (its `username` field)."""
        return self.key_for_email(request.POST.get("username"))


def login_wait(request: HttpRequest) -> float | None:
    """Seconds until this login attempt may be made, or None if it may go ahead.

    Like DRF's view throttling, every limiter counts the attempt, and the longest wait wins.
    """
    waits: list[float] = []
    # LoginIPThrottle reads only request.META, which a plain Django request has too.
    throttles: list[SimpleRateThrottle] = [LoginIPThrottle(), AdminLoginEmailThrottle()]
    for throttle in throttles:
        if not throttle.allow_request(request, None):  # type: ignore[arg-type]
            waits.append(throttle.wait() or 0.0)
    return max(waits) if waits else None


class ThrottledAdminSite(admin.AdminSite):
    """Django's admin site; a login POST over the limits is refused before any password check."""

    def login(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The admin login view, throttled per client IP and per email."""
        if request.method == "POST":
            wait = login_wait(request)
            if wait is not None:
                context = {
                    **self.each_context(request),
                    "title": "Too many login attempts",
                    "wait_seconds": max(math.ceil(wait), 1),
                }
                return TemplateResponse(request, "admin/login_throttled.html", context, status=429)
        return super().login(request, extra_context)
