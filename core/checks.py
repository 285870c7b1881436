"""System checks of our own, run by `manage.py check` (deploy ones with `--deploy`)."""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register

# Password hashers fit for production: memory-hard or with many iterations.
STRONG_HASHERS = frozenset(
    {
        "django.contrib.auth.hashers.Argon2PasswordHasher",
        "users.password_hashing.BoundedArgon2PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
        "django.contrib.auth.hashers.ScryptPasswordHasher",
        "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    }
)


@register(Tags.security, deploy=True)
def check_password_hasher(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """Warn when new passwords would be hashed weakly (DJANGO_FAST_PASSWORD_HASHER is for
    tests and load runs only)."""
    if settings.PASSWORD_HASHERS[0] in STRONG_HASHERS:
        return []
    return [
        Warning(
            f"New passwords are hashed with {settings.PASSWORD_HASHERS[0]}.",
            hint="Unset DJANGO_FAST_PASSWORD_HASHER: it is for tests only.",
            id="core.W001",
        )
    ]
