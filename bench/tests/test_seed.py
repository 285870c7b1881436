"""bench/seed.py builds the deep list page's cursor itself instead of walking `next` links:
it must land exactly where the links lead, also when join dates tie at the page boundary."""

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from bench import seed
from users.models import User

pytestmark = pytest.mark.django_db


def test_deep_cursor_lands_where_next_links_lead(
    staff: User, client_for: Callable[[User], APIClient]
) -> None:
    start = timezone.now() - timedelta(days=1)
    moments = [start + timedelta(seconds=second) for second in range(250)]
    # Rows 95-105 share one join date: page 3 (row 100 on) starts inside the tie, so the
    # cursor needs DRF's offset into it as well as the position before it.
    moments[96:106] = [moments[95]] * 10
    User.objects.bulk_create(
        User(email=f"deep{n}@example.com", password="!", date_joined=moment, updated_at=moment)
        for n, moment in enumerate(moments)
    )
    client = client_for(staff)

    path, first_id, pages = seed.deep_page(250)

    assert pages == 2
    walked = client.get("/api/v1/users/").json()
    for _ in range(pages):
        walked = client.get(walked["next"]).json()
    built = client.get(path).json()
    assert built["results"][0]["id"] == first_id
    assert [row["id"] for row in built["results"]] == [row["id"] for row in walked["results"]]
