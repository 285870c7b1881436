"""Seed the benchmark's database: users, tokens for the hot set, a staff reader, a webhook.

Usage (Django settings from the environment):

    python bench/seed.py USERS TOKEN_USERS WEBHOOK_URL OUT_DIR

* USERS realistic users by `manage.py seed_users`'s own loader (COPY, one password hash);
* an API token each for TOKEN_USERS random active users, by COPY: the Zipf-hot set;
* one staff user with a token: it reads and writes the users outside the hot set (staff
  may see and change anyone), and it pages the staff list;
* a webhook subscription to `user.updated` at WEBHOOK_URL (the harness's receiver);
* the cursor of the page 1,000 pages deep in the staff list, encoded by DRF itself.

Writes OUT_DIR/users.txt, one line per Zipf rank: "<user id> <token>", or "<user id> -"
for users read with the staff token (hot set first, each part shuffled), and
OUT_DIR/fixture.json with the staff token and the list paths.
"""

import json
import os
import random
import sys
from datetime import timedelta
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.db import connection  # noqa: E402
from django.db.models import Max  # noqa: E402
from django.utils import timezone  # noqa: E402
from knox.crypto import create_token_string, hash_token  # noqa: E402
from knox.models import AuthToken  # noqa: E402
from knox.settings import CONSTANTS  # noqa: E402
from rest_framework.pagination import Cursor  # noqa: E402

from events.webhooks import webhook_subscription_create  # noqa: E402
from users import services  # noqa: E402
from users.api.pagination import UserCursorPagination  # noqa: E402
from users.management.commands.seed_users import seed_users  # noqa: E402
from users.models import User  # noqa: E402

LIST_PATH = "/api/v1/users/"
DEEP_PAGES = 1000
STAFF_EMAIL = "bench-staff@example.com"


def main() -> None:
    """Seed everything and write the files the load generator reads."""
    count, token_users, webhook_url, out, subscribers = (
        int(sys.argv[1]),
        int(sys.argv[2]),
        sys.argv[3],
        Path(sys.argv[4]),
        int(sys.argv[5]),
    )
    seed_users(count=count, seed=4, log=lambda line: print(f"seed: {line}", flush=True))
    rng = random.Random(4)  # noqa: S311 (test data)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, is_active FROM {User._meta.db_table}")  # noqa: S608
        rows = cursor.fetchall()
    active = [user_id for user_id, is_active in rows if is_active]
    hot = rng.sample(active, min(token_users, len(active)))
    hot_set = set(hot)
    rest = [user_id for user_id, _ in rows if user_id not in hot_set]
    rng.shuffle(rest)
    tokens = _copy_tokens(hot)

    staff = services.user_create(email=STAFF_EMAIL, password=None, is_staff=True)
    _, staff_token = AuthToken.objects.create(user=staff, expiry=timedelta(days=1))
    for number in range(subscribers):
        webhook_subscription_create(url=f"{webhook_url}/{number}", topics=["user.updated"])
    deep_path, deep_first_id, deep_pages = deep_page(count)

    lines = [f"{user_id} {token}" for user_id, token in zip(hot, tokens, strict=True)]
    lines += [f"{user_id} -" for user_id in rest]
    (out / "users.txt").write_text("\n".join(lines) + "\n")
    fixture = {
        "staff_token": staff_token,
        "list_path": LIST_PATH,
        "deep_path": deep_path,
        "deep_first_id": deep_first_id,
        "deep_pages": deep_pages,
        "hot_user_id": str(hot[0]),
        "hot_token": tokens[0],
    }
    (out / "fixture.json").write_text(json.dumps(fixture))
    print(
        f"seeded {count} users, {len(hot)} with tokens, a staff reader and "
        f"{subscribers} webhook subscriptions"
    )


def _copy_tokens(user_ids: list[object]) -> list[str]:
    """A fresh API token for each user, by COPY (knox's digest and key, 1-day expiry)."""
    now = timezone.now()
    expiry = now + timedelta(days=1)
    tokens = []
    table = AuthToken._meta.db_table
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(
            f"COPY {table} (digest, token_key, user_id, created, expiry) FROM STDIN"
        ) as copy,
    ):
        for user_id in user_ids:
            token = create_token_string()
            copy.write_row(
                (hash_token(token), token[: CONSTANTS.TOKEN_KEY_LENGTH], user_id, now, expiry)
            )
            tokens.append(token)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table}")
    return tokens


def deep_page(count: int) -> tuple[str, str, int]:
    """The list path of the page DEEP_PAGES pages in (halfway in, below 100,000 users),
    the id of its first user, and how many pages in it is.

    The cursor is what DRF's `next` link carries after that many pages: the position
    (date_joined) just before the page's first row, and how many rows at that row's own
    position earlier pages already showed; DRF's own paginator encodes it.
    """
    paginator = UserCursorPagination()
    pages = min(DEEP_PAGES, count // paginator.page_size // 2)
    first = User.objects.order_by(*paginator.ordering)[pages * paginator.page_size]
    before = User.objects.filter(date_joined__lt=first.date_joined).aggregate(
        position=Max("date_joined")
    )["position"]
    shown = User.objects.filter(date_joined=first.date_joined, id__lt=first.pk).count()
    paginator.base_url = LIST_PATH
    # DRF itself puts str(date_joined) there; the stubs say int.
    cursor = Cursor(offset=shown, reverse=False, position=str(before))  # type: ignore[arg-type]
    url = paginator.encode_cursor(cursor)
    return url, str(first.pk), pages


if __name__ == "__main__":
    main()
