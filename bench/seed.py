"""Seed users, each with one API token, fast: COPY, one precomputed password hash.

Usage (Django settings from the environment): python bench/seed.py USERS OUT_FILE
Writes "<user id> <token>" lines, shuffled, for bench/zipf.lua. Replaces all users.
"""

import os
import random
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.contrib.auth.hashers import make_password  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402
from knox.crypto import create_token_string, hash_token  # noqa: E402
from knox.models import AuthToken  # noqa: E402
from knox.settings import CONSTANTS  # noqa: E402

from users.models import User  # noqa: E402


def main() -> None:
    """Replace every user and token with `count` fresh ones; write their ids and tokens."""
    count, out = int(sys.argv[1]), Path(sys.argv[2])
    # One Argon2 hash for all: hashing 100,000 passwords would take over an hour.
    password = make_password("bench-password-not-for-login")
    now = timezone.now()
    expiry = now + timedelta(days=1)
    users_table, tokens_table = User._meta.db_table, AuthToken._meta.db_table
    lines = []
    connection.ensure_connection()
    raw = connection.connection
    with raw.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tokens_table}, {users_table} CASCADE")
        with (
            cursor.copy(
                f"COPY {users_table} (id, password, is_superuser, email, display_name,"
                " is_active, is_staff, date_joined, updated_at) FROM STDIN"
            ) as users_copy,
        ):
            ids = [uuid.uuid4() for _ in range(count)]
            for i, user_id in enumerate(ids):
                users_copy.write_row(
                    (
                        user_id,
                        password,
                        False,
                        f"bench{i}@example.com",
                        f"Bench User {i}",
                        True,
                        False,
                        now,
                        now,
                    )
                )
        with cursor.copy(
            f"COPY {tokens_table} (digest, token_key, user_id, created, expiry) FROM STDIN"
        ) as tokens_copy:
            for user_id in ids:
                token = create_token_string()
                tokens_copy.write_row(
                    (hash_token(token), token[: CONSTANTS.TOKEN_KEY_LENGTH], user_id, now, expiry)
                )
                lines.append(f"{user_id} {token}")
        cursor.execute(f"ANALYZE {users_table}")
        cursor.execute(f"ANALYZE {tokens_table}")
    raw.commit()
    random.shuffle(lines)
    out.write_text("\n".join(lines) + "\n")
    print(f"seeded {count} users with tokens")


if __name__ == "__main__":
    main()
