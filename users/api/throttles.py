"""Rate limits on the unauthenticated entry points: sign-up and login."""

import hashlib

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from users.models import normalize_email


class SignUpThrottle(SimpleRateThrottle):
    """Sign-ups per client IP. Staff creating users are not limited by it."""

    scope = "signup"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        """Key by client IP, unless the caller is staff."""
        if request.user.is_staff:
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginIPThrottle(SimpleRateThrottle):
    """Login attempts per client IP, whatever the email."""

    scope = "login_ip"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        """Key by client IP (honouring NUM_PROXIES)."""
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginEmailThrottle(SimpleRateThrottle):
    """Login attempts per email, so guessing one account's password from many IPs is slow."""

    scope = "login_email"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        """Key by the canonical email in the body; no email, no key (validation rejects it)."""
        email = request.data.get("email") if hasattr(request.data, "get") else None
        return self.key_for_email(email)

    def key_for_email(self, email: object) -> str | None:
        """The counter's key for this email; None when there is no email to count."""
        if not isinstance(email, str) or not email:
            return None
        # Hashed: keeps cache keys short, free of odd characters and of personal data.
        ident = hashlib.sha256(normalize_email(email).encode()).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": ident}
