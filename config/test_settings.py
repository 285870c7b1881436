"""Settings for the test suite: config.settings, with a secret key made for this run.

The settings refuse any key written into the repository (core/secret_keys.py), a test
fixture's included, so the suite cannot take its key from pytest.ini. Processes the tests
start inherit the key through the environment.
"""

import os
import secrets

os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))

from config.settings import *  # noqa: F403
