"""Fill Redis with every user and token, through the cache's own fill path, so the warm
phase of bench/run.py measures a warm cache rather than a 15-second sample of a long tail.

Usage (Django settings from the environment): python bench/prime.py
"""

import os
import sys
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from knox.models import AuthToken  # noqa: E402

from users.cache import auth_token_remember, user_cache_prime  # noqa: E402
from users.models import User  # noqa: E402


def main() -> None:
    """Prime every user entry and every token entry in Redis."""
    users = tokens = 0
    for user in User.objects.iterator(chunk_size=5000):
        user_cache_prime(user)
        users += 1
    for token in AuthToken.objects.iterator(chunk_size=5000):
        auth_token_remember(token)
        tokens += 1
    print(f"primed {users} users and {tokens} tokens")


if __name__ == "__main__":
    main()
