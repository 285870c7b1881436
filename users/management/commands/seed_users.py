"""`manage.py seed_users N`: load N realistic users fast, for benchmarks and browser tests.

It writes rows directly instead of calling `users.services.user_create` once per user:
that would hash a password and run validation a million times (hours instead of
minutes). The rows it writes are valid users (canonical emails, one real password hash),
and no events are emitted for them: seeded users are test data, not sign-ups.
"""

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from time import monotonic
from typing import Any

from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandParser
from django.db import connections, transaction

from users.models import User

PRIMARY = "default"
BATCH_SIZE = 100_000
# Spread over this many days before now, like a service that has been live a while.
JOIN_SPAN_DAYS = 5 * 365
INACTIVE_SHARE = 0.03


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST_NAMES = _words("""
Ada Alan Alice Amara Ana Andrei Anna Aylin Ben Bruno Carla Chen Chiara Chloe Daniel David
Diego Elena Emma Erik Fatima Felix Grace Hana Hugo Ines Isaac Ivan Jack Jana Jonas Julia
Kai Karin Kenji Lara Leo Lena Liam Lucas Maria Marta Mateo Mia Nadia Noah Nora Olga Omar
Oscar Paula Pedro Priya Rafael Rosa Sam Sara Sofia Tomas Yara Zoe
""")
LAST_NAMES = _words("""
Abbott Almeida Baker Bauer Becker Brown Castro Chen Costa Cruz Dubois Evans Fischer Garcia
Gomez Green Hall Hansen Ito Jensen Kim Kowalski Lee Lopez Martin Meyer Moreau Muller Nagy
Nguyen Novak Olsen Park Patel Perez Petrov Rossi Santos Schmidt Silva Smith Suzuki Tanaka
Taylor Torres Wagner Walker Weber Wilson Wright Young Zhang
""")
DOMAINS = _words("""
example.com example.org example.net mail.example.com inbox.example.org corp.example.net
post.example.com
""")

COLUMNS = (
    "id",
    "email",
    "display_name",
    "password",
    "is_active",
    "is_staff",
    "is_superuser",
    "date_joined",
    "updated_at",
)


class Command(BaseCommand):
    """Insert N users with COPY (PostgreSQL) or batched bulk_create (SQLite)."""

    help = "Load N realistic users quickly (one shared password hash)."

    def add_arguments(self, parser: CommandParser) -> None:
        """N, an optional shared password and a random seed."""
        parser.add_argument("count", type=int, help="How many users to add.")
        parser.add_argument(
            "--password",
            default=None,
            help="Password every seeded user gets (hashed once). Default: none can log in.",
        )
        parser.add_argument("--seed", type=int, default=None, help="Random seed, for repeats.")

    def handle(
        self, *args: Any, count: int, password: str | None, seed: int | None, **options: Any
    ) -> None:
        """Seed the users in batches, then refresh the planner's statistics."""
        started = monotonic()
        seeded = seed_users(count=count, password=password, seed=seed, log=self.stdout.write)
        self.stdout.write(f"Seeded {seeded} users in {monotonic() - started:.1f} s.")


def seed_users(
    *,
    count: int,
    password: str | None = None,
    seed: int | None = None,
    log: Any = None,
) -> int:
    """Insert `count` users on the primary and return how many were inserted.

    Emails are numbered from the current number of users, so repeated runs add users
    rather than collide with the previous run's.
    """
    connection = connections[PRIMARY]
    # One hash for every row: hashing is deliberately slow (Argon2), a million would take hours.
    password_hash = make_password(password)
    start = User.objects.using(PRIMARY).count()
    rows = _rows(start=start, count=count, password_hash=password_hash, rng=random.Random(seed))  # noqa: S311 (test data)
    done = 0
    while done < count:
        batch = [next(rows) for _ in range(min(BATCH_SIZE, count - done))]
        with transaction.atomic(using=PRIMARY):
            if connection.vendor == "postgresql":
                _copy(connection, batch)
            else:
                User.objects.using(PRIMARY).bulk_create(
                    [User(**dict(zip(COLUMNS, row, strict=True))) for row in batch],
                    batch_size=1000,
                )
        done += len(batch)
        if log is not None:
            log(f"  {done}/{count}")
    if connection.vendor == "postgresql":
        # Fresh statistics: the planner's row estimates drive index choice and the
        # admin's estimated total.
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {User._meta.db_table}")
    return done


def _copy(connection: Any, batch: list[tuple[Any, ...]]) -> None:
    statement = f"COPY {User._meta.db_table} ({', '.join(COLUMNS)}) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
        for row in batch:
            copy.write_row(row)


def _rows(
    *, start: int, count: int, password_hash: str, rng: random.Random
) -> Iterator[tuple[Any, ...]]:
    now = datetime.now(tz=UTC)
    span = timedelta(days=JOIN_SPAN_DAYS).total_seconds()
    for number in range(start, start + count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email = f"{first}.{last}{number}@{rng.choice(DOMAINS)}".lower()
        joined = now - timedelta(seconds=rng.random() * span)
        yield (
            uuid.uuid4(),  # never from the seed: repeated runs must not collide
            email,
            f"{first} {last}",
            password_hash,
            rng.random() >= INACTIVE_SHARE,
            False,
            False,
            joined,
            joined,
        )
