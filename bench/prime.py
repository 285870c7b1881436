"""Fill Redis with the hottest users, through the cache's own fill paths: the tokens and
user entries of the first PRIME_USERS ranks of the users file (the hottest Zipf ranks;
they all have tokens when PRIME_USERS <= BENCH_TOKEN_USERS), and the staff reader's. The
warm scenario then measures warm caches for them rather than a few seconds of filling;
other users are cached as the traffic reaches them. Priming costs about 1 ms of CPU per
user, so not every token holder is primed each round.

Usage (Django settings from the environment): python bench/prime.py USERS_FILE PRIME_USERS
"""

import os
import sys
from itertools import islice
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.db.models import Q  # noqa: E402
from knox.models import AuthToken  # noqa: E402

from users.cache import auth_token_remember, user_cache_prime  # noqa: E402

BATCH = 2000


def main() -> None:
    """Prime each selected token and its user in Redis."""
    users_file, count = Path(sys.argv[1]), int(sys.argv[2])
    with users_file.open() as lines:
        hottest = [line.split()[0] for line in islice(lines, count) if not line.endswith("-\n")]
    primed = 0
    for start in range(0, len(hottest) + 1, BATCH):
        batch = hottest[start : start + BATCH]
        # The first batch also takes the staff reader's token.
        wanted = (
            Q(user_id__in=batch) | Q(user__is_staff=True) if start == 0 else Q(user_id__in=batch)
        )
        for token in AuthToken.objects.filter(wanted).select_related("user"):
            auth_token_remember(token)
            user_cache_prime(token.user)
            primed += 1
    print(f"primed {primed} tokens and their users")


if __name__ == "__main__":
    main()
