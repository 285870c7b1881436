"""Rate limits on the unauthenticated entry points: sign-up and login (per client IP;
failed logins also back off per email, users.login_throttle). Counted in fixed windows,
as every API rate limit is (core.http.throttling)."""

from rest_framework.request import Request
from rest_framework.views import APIView

from core.http.throttling import FixedWindowRateThrottle


class SignUpThrottle(FixedWindowRateThrottle):
    """Sign-ups per client IP. Staff creating users are not limited by it."""

    scope = "signup"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        """Key by client IP, unless the caller is staff."""
        if request.user.is_staff:
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginIPThrottle(FixedWindowRateThrottle):
    """Login attempts per client IP, whatever the email."""

    scope = "login_ip"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        """Key by client IP (honouring NUM_PROXIES)."""
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
