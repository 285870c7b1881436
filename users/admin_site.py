"""The admin site, with its login form throttled exactly like the API's token endpoint.

The admin login is a password check like `POST /api/v1/auth/token/`, so it gets the same
limits and counts against the same counters: THROTTLE_LOGIN_IP_RATE per client IP (DRF's
throttle, reused), and the failed-login back-off per client and email and per email
(users.login_throttle, fed by Django's `user_login_failed` signal, which both doors
send). Alternating between the two doors buys an attacker nothing.
"""

import math
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from users import login_throttle
from users.api.throttles import LoginIPThrottle


def login_wait(request: HttpRequest) -> float | None:
    """Seconds until this login attempt may be made, or None if it may go ahead.

    The per-IP limiter counts every attempt, as DRF's view throttling does; the back-off
    only reads its counters here (failures are counted after the password check).
    """
    waits: list[float] = []
    ip_throttle = LoginIPThrottle()
    # LoginIPThrottle reads only request.META, which a plain Django request has too.
    if not ip_throttle.allow_request(request, None):  # type: ignore[arg-type]
        waits.append(ip_throttle.wait() or 0.0)
    email = request.POST.get("username")
    if email:
        backoff = login_throttle.login_wait(request=request, email=email)
        if backoff is not None:
            waits.append(backoff)
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
