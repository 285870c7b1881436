"""Token authentication: django-rest-knox's hashed, expiring tokens, hardened and cached."""

import binascii
from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox import auth as knox_auth
from knox.crypto import hash_token
from knox.models import AuthToken
from knox.settings import knox_settings
from rest_framework import exceptions

from core.cache.backend import RedisUnavailable
from core.db import router as db_router
from users import cache as user_caches


class TokenAuthentication(knox_auth.TokenAuthentication):
    """Knox's hashed, expiring tokens: cached, else looked up on the primary.

    Knox costs two queries a request (the token with its user, a sweep of the user's
    expired tokens). Here a token verified once is cached by its digest (users.cache), and
    the user comes from the user cache, so a warm request runs no query. Whatever the
    cache cannot vouch for (miss, Redis down, expired, knox's AUTO_REFRESH on) goes to
    knox's own check, on the primary: authentication never trusts a replica, so a
    revocation, a deactivation or a new sign-up takes effect at once. A user who wrote
    recently from another client gets their reads pinned to the primary too.

    Knox decodes the header value as UTF-8 without a guard; tokens are hex, so any byte
    outside ASCII is a malformed credential (401, not 500).
    """

    def authenticate_credentials(self, token: bytes) -> Any:
        """Reject non-ASCII tokens; answer from the cache if it can, else from knox."""
        try:
            text = token.decode("ascii")
            digest = hash_token(text)
        except (UnicodeDecodeError, TypeError, binascii.Error) as exc:
            raise _invalid_token() from exc
        # Renewal writes the expiry on each use; a cached token would skip that.
        if not knox_settings.AUTO_REFRESH:
            try:
                cached = user_caches.auth_token_get(digest)
            except user_caches.TokenRevoked as exc:
                raise _invalid_token() from exc
            except RedisUnavailable:
                cached = None
            if cached is not None:
                cached_token, stamp = cached
                if cached_token.expiry is None or cached_token.expiry > timezone.now():
                    return self._from_cache(cached_token, stamp)
        with db_router.use_primary():
            user, auth_token = super().authenticate_credentials(token)
        user_caches.auth_token_remember(auth_token)
        user_caches.user_cache_prime(user)
        db_router.apply_user_pin(user.pk)
        return user, auth_token

    def _cleanup_token(self, auth_token: AuthToken) -> bool:
        """Delete this token if it has expired (True: skip it), and only this one.

        Knox also reads every other token of the user, on every uncached request, to
        delete the expired ones: one more query on the primary each time. Expired tokens
        are deleted in bulk instead (`users.tasks.delete_expired_auth_tokens`).
        """
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            auth_token.delete()
            return True
        return False

    def _from_cache(self, token: AuthToken, stamp: Any) -> tuple[Any, AuthToken]:
        # A miss loads the user from the primary: never judge "active" on a replica.
        with db_router.use_primary():
            entry = user_caches.user_entry_get(token.user_id, stamp=stamp)
        if entry is None:
            raise _invalid_token()
        user = user_caches.principal_from_entry(entry)
        token.user = user
        validated = self.validate_user(token)
        db_router.apply_user_pin(user.pk)
        return validated


def _invalid_token() -> exceptions.AuthenticationFailed:
    # Made only when refusing: building it (a lazy translation) on every request cost
    # about 2% of a warm read's CPU.
    return exceptions.AuthenticationFailed(_("Invalid token."))


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
