"""Time the admin's changelist and searches against a seeded database; print medians.

Usage (against `make services-up` after `make seed USERS=1000000`):

    set -a && . ./.services.env && set +a && .venv/bin/python bench/admin_timings.py

Each page is fetched through Django's test client (the whole request: middleware, session,
admin view, queries on the primary or replica, template rendering), logged in as a bench
superuser it creates if missing. Search terms are taken from random existing users, so
every run searches for something that is there, and no two runs search the same thing.
"""

import os
import random
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver")
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django

django.setup()

from django.test import Client  # noqa: E402

from users import services  # noqa: E402
from users.models import User  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))
WARMUP = 2
BENCH_EMAIL = "bench-admin@example.com"
CHANGELIST = "/admin/users/user/"


def main() -> None:
    """Print the median, fastest and slowest time of each admin page."""
    client = Client()
    client.force_login(_bench_admin())
    rng = random.Random()  # noqa: S311 (choice of search terms)
    samples = _sample_users(rng, ROUNDS + WARMUP)
    print(f"users: {User.objects.count()} (exact count, not part of any timing)")
    print(f"{'page':<34} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    _report("changelist, first page", lambda _: CHANGELIST, client)
    _report("changelist, page 50", lambda _: f"{CHANGELIST}?p=50", client)
    _report("changelist, page 100 (last linked)", lambda _: f"{CHANGELIST}?p=100", client)
    _report(
        "email prefix search",
        lambda n: f"{CHANGELIST}?q={samples[n].email[:10]}",
        client,
    )
    _report("exact email search", lambda n: f"{CHANGELIST}?q={samples[n].email}", client)
    _report(
        "display name prefix search",
        lambda n: f"{CHANGELIST}?q={samples[n].display_name[:-3].replace(' ', '+')}",
        client,
    )
    # The broadest searches: tens of thousands of matches, counted exactly for the pager.
    _report("one-letter search (a, m or s)", lambda n: f"{CHANGELIST}?q={'ams'[n % 3]}", client)
    _report(
        "filter inactive, first page",
        lambda _: f"{CHANGELIST}?is_active__exact=0",
        client,
    )


def _bench_admin() -> User:
    user = User.objects.filter(email=BENCH_EMAIL).first()
    if user is None:
        user = services.user_create(
            email=BENCH_EMAIL, password=None, is_staff=True, is_superuser=True
        )
    return user


def _sample_users(rng: random.Random, count: int) -> list[User]:
    oldest = User.objects.earliest("date_joined").date_joined
    newest = User.objects.latest("date_joined").date_joined
    picked: list[User] = []
    while len(picked) < count:
        moment = oldest + (newest - oldest) * rng.random()
        user = User.objects.filter(date_joined__gte=moment, is_staff=False).first()
        if user is not None and user.display_name:
            picked.append(user)
    return picked


def _report(label: str, url_for: Callable[[int], str], client: Client) -> None:
    timings = []
    for round_number in range(WARMUP + ROUNDS):
        url = url_for(round_number)
        started = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}")
        if round_number >= WARMUP:
            timings.append(elapsed)
    print(
        f"{label:<34} {statistics.median(timings):>10.1f} {min(timings):>8.1f} {max(timings):>8.1f}"
    )


if __name__ == "__main__":
    main()
