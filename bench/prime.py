"""Fill Redis with the Zipf-hot set, through the cache's own fill paths: every token in the
database (the hot users' and the staff reader's) and the user each belongs to. The warm
scenario then measures warm caches for the hot set rather than a short sample of them
filling; users outside the hot set are cached only as the traffic reaches them.

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


def main() -> None:
    """Prime each token and its user in Redis."""
    tokens = 0
    for token in AuthToken.objects.select_related("user").iterator(chunk_size=5000):
        auth_token_remember(token)
        user_cache_prime(token.user)
        tokens += 1
    print(f"primed {tokens} tokens and their users")


if __name__ == "__main__":
    main()
