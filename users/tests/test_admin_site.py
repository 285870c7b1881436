"""users.admin_site: the admin login is throttled like the API login, on the same counters."""

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from users.models import User
from users.tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"


def attempt(client: Client, email: str) -> int:
    """One failed login attempt; its HTTP status."""
    return client.post(LOGIN, {"username": email, "password": "wrong-password"}).status_code


def test_staff_log_in_through_the_throttled_site() -> None:
    staff = UserFactory.create(is_staff=True)
    response = Client().post(LOGIN, {"username": staff.email, "password": DEFAULT_PASSWORD})
    assert response.status_code == 302


def test_non_staff_are_refused(user: User) -> None:
    response = Client().post(LOGIN, {"username": user.email, "password": DEFAULT_PASSWORD})
    assert response.status_code == 200
    assert "correct email and password for a staff account" in response.content.decode()


def test_one_client_backs_off_after_too_many_failures_for_one_email(settings: Any) -> None:
    settings.LOGIN_FREE_FAILURES_PER_CLIENT = 3
    staff = UserFactory.create(is_staff=True)
    client = Client()

    assert [attempt(client, staff.email) for _ in range(3)] == [200, 200, 200]
    # Even the right password is refused now, unchecked: guessing has stopped paying.
    response = client.post(LOGIN, {"username": staff.email.upper(), "password": DEFAULT_PASSWORD})
    assert response.status_code == 429
    assert "Too many login attempts. Try again in" in response.content.decode()
    assert "_auth_user_id" not in client.session
    # Another email from the same IP is not affected by this email's back-off...
    assert attempt(client, "someone-else@example.com") == 200
    # ...nor is the owner, at another address.
    owner = Client(REMOTE_ADDR="198.51.100.7")
    response = owner.post(LOGIN, {"username": staff.email, "password": DEFAULT_PASSWORD})
    assert response.status_code == 302


def test_one_ip_is_locked_out_whatever_the_emails(throttle_rates: Callable[..., None]) -> None:
    throttle_rates(login_ip="3/minute")
    client = Client()

    statuses = [attempt(client, f"guess{number}@example.com") for number in range(4)]

    assert statuses == [200, 200, 200, 429]
    other_ip = Client(REMOTE_ADDR="203.0.113.9")
    assert attempt(other_ip, "guess9@example.com") == 200


def test_admin_and_api_logins_share_the_counters(settings: Any) -> None:
    settings.LOGIN_FREE_FAILURES_PER_CLIENT = 2
    staff = UserFactory.create(is_staff=True)
    api = APIClient()
    for _ in range(2):
        api.post("/api/v1/auth/token/", {"email": staff.email, "password": "x"}, format="json")

    assert attempt(Client(), staff.email) == 429


def test_only_login_posts_count(throttle_rates: Callable[..., None]) -> None:
    throttle_rates(login_ip="2/minute")
    client = Client()
    for _ in range(5):
        assert client.get(LOGIN).status_code == 200
    assert attempt(client, "a@example.com") == 200


def test_lockout_holds_with_redis_down(redis_down: None, settings: Any) -> None:
    # The cache layer falls back to a per-process cache while Redis fails
    # (core.cache.backend): counting goes on there instead of silently stopping.
    settings.LOGIN_FREE_FAILURES_PER_CLIENT = 3
    client = Client()

    statuses = [attempt(client, "target@example.com") for _ in range(4)]

    assert statuses == [200, 200, 200, 429]
