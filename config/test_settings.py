"""Settings for the test suite (pytest.ini names them): config.settings, with a secret key
made for this run and what only tests may use.

The settings refuse any key written into the repository (core/secret_keys.py), a test
fixture's included, so the suite cannot take its key from pytest.ini. Processes the tests
start inherit the key, and these settings (pytest-django exports DJANGO_SETTINGS_MODULE),
through the environment; those meant to run production settings name config.settings or
leave the variable out.
"""

import os
import secrets

os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))

from config.settings import *  # noqa: F403

# Argon2 costs ~50 ms and its bounded memory a hash, which would dominate the suite. MD5 is
# fit for nothing else, so production settings have no way to choose it.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
