"""Token authentication: django-rest-knox's hashed, expiring tokens, hardened."""

from typing import Any

from django.utils.translation import gettext_lazy as _
from knox import auth as knox_auth
from rest_framework import exceptions


class TokenAuthentication(knox_auth.TokenAuthentication):
    """Knox's TokenAuthentication that answers 401, not 500, to a non-ASCII token.

    Knox decodes the header value as UTF-8 without a guard; tokens are hex, so any byte
    outside ASCII means a malformed credential.
    """

    def authenticate_credentials(self, token: bytes) -> Any:
        """Reject non-ASCII tokens, then let knox check the hash, expiry and user."""
        try:
            token.decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from exc
        return super().authenticate_credentials(token)
