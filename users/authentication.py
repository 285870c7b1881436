"""Token authentication: django-rest-knox's hashed, expiring tokens, hardened."""

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox import auth as knox_auth
from knox.settings import knox_settings
from rest_framework import exceptions

from core import db_router


class TokenAuthentication(knox_auth.TokenAuthentication):
    """Knox's hashed, expiring tokens, looked up on the primary.

    Authentication never trusts a replica: a revoked token, a deactivation or a new
    sign-up takes effect at once. A user who wrote recently from another client gets
    their reads pinned to the primary too. Knox decodes the header value as UTF-8
    without a guard; tokens are hex, so any byte outside ASCII is a malformed credential.
    """

    def authenticate_credentials(self, token: bytes) -> Any:
        """Reject non-ASCII tokens, then let knox check the hash, expiry and user."""
        try:
            token.decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from exc
        with db_router.use_primary():
            user, auth_token = super().authenticate_credentials(token)
        db_router.apply_user_pin(user.pk)
        return user, auth_token


class PrimaryModelBackend(ModelBackend):
    """Django's model backend (login, session users) reading users from the primary."""

    def authenticate(
        self, request: Any, username: Any = None, password: Any = None, **kwargs: Any
    ) -> Any:
        """Check credentials against the primary, so a fresh sign-up can log in at once."""
        with db_router.use_primary():
            return super().authenticate(request, username=username, password=password, **kwargs)

    def get_user(self, user_id: Any) -> Any:
        """Load the session's user from the primary, so a deactivation applies at once."""
        with db_router.use_primary():
            return super().get_user(user_id)


class TokenScheme(OpenApiAuthenticationExtension):
    """Describes TokenAuthentication in the OpenAPI schema as a bearer token."""

    target_class = "users.authentication.TokenAuthentication"
    name = "bearerToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        """`Authorization: Bearer <token>`."""
        return build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix=knox_settings.AUTH_HEADER_PREFIX
        )
