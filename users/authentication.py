"""Token authentication: django-rest-knox's hashed, expiring tokens, hardened and cached."""

import binascii
from typing import Any

from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox import auth as knox_auth
from knox.crypto import hash_token
from knox.settings import knox_settings
from rest_framework import exceptions

from core.cache import RedisUnavailable
from users import cache as user_caches


class TokenAuthentication(knox_auth.TokenAuthentication):
    """Knox's TokenAuthentication, answering 401 (not 500) to a non-ASCII token, and cached.

    Knox decodes the header value as UTF-8 without a guard; tokens are hex, so any byte
    outside ASCII means a malformed credential.

    Knox costs two queries a request (the token with its user, a sweep of the user's
    expired tokens). Here a token verified once is cached by its digest (users.cache), and
    the user comes from the user cache, so a warm request runs no query. Whatever the
    cache cannot vouch for (miss, Redis down, expired, knox's AUTO_REFRESH on) goes to
    knox's own database check.
    """

    def authenticate_credentials(self, token: bytes) -> Any:
        """Reject non-ASCII tokens; answer from the cache if it can, else from knox."""
        invalid = exceptions.AuthenticationFailed(_("Invalid token."))
        try:
            text = token.decode("ascii")
            digest = hash_token(text)
        except (UnicodeDecodeError, TypeError, binascii.Error) as exc:
            raise invalid from exc
        # Renewal writes the expiry on each use; a cached token would skip that.
        if not knox_settings.AUTO_REFRESH:
            try:
                cached = user_caches.auth_token_get(digest)
            except user_caches.TokenRevoked as exc:
                raise invalid from exc
            except RedisUnavailable:
                cached = None
            if cached is not None and (cached.expiry is None or cached.expiry > timezone.now()):
                entry = user_caches.user_entry_get(cached.user_id)
                if entry is None:
                    raise invalid
                user = user_caches.principal_from_entry(entry)
                cached.user = user
                return self.validate_user(cached)
        user, auth_token = super().authenticate_credentials(token)
        user_caches.auth_token_remember(auth_token)
        user_caches.user_cache_prime(user)
        return user, auth_token


class TokenScheme(OpenApiAuthenticationExtension):
    """Describes TokenAuthentication in the OpenAPI schema as a bearer token."""

    target_class = "users.authentication.TokenAuthentication"
    name = "bearerToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        """`Authorization: Bearer <token>`."""
        return build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix=knox_settings.AUTH_HEADER_PREFIX
        )
