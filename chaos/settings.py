"""Settings of the chaos run's web server, worker and beat: production settings, but for a
fast password hasher.

Argon2 costs CPU seconds per sign-up on a shared 2-core machine: the run would measure
password hashing, not faults. A module of its own (chaos/run.py names it), so production
settings have no way to choose MD5; the Docker image leaves chaos/ out.
"""

from config.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
