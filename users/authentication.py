"""Token authentication: django-rest-knox's hashed, expiring tokens, hardened."""

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox import auth as knox_auth
from knox.settings import knox_settings
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


class TokenScheme(OpenApiAuthenticationExtension):
    """Describes TokenAuthentication in the OpenAPI schema as a bearer token."""

    target_class = "users.authentication.TokenAuthentication"
    name = "bearerToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        """`Authorization: Bearer <token>`."""
        return build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix=knox_settings.AUTH_HEADER_PREFIX
        )
