"""users.login_throttle: failed logins back off per client and email and per email, so
an attacker at one address cannot lock the owner out, and guessing stays slow."""

from typing import Any

import pytest
from django.test import Client
from knox.models import AuthToken
from rest_framework.test import APIClient

from users import login_throttle
from users.tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

TOKEN = "/api/v1/auth/token/"
ATTACKER = "203.0.113.66"
OWNER = "198.51.100.7"


class Clock:
    """The back-off's clock, moved by the test instead of waiting."""

    def __init__(self) -> None:
        self.time = 1_000_000.0

    def __call__(self) -> float:
        return self.time


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(login_throttle, "now", fake)
    return fake


@pytest.fixture(autouse=True)
def _no_ip_limit(throttle_rates: Any) -> None:
    # The per-IP limit is tested elsewhere; here only the back-off is measured.
    throttle_rates(login_ip="100000/minute")


def api_login(email: str, password: str, ip: str) -> Any:
    return APIClient().post(
        TOKEN, {"email": email, "password": password}, format="json", REMOTE_ADDR=ip
    )


def admin_login(email: str, password: str, ip: str) -> int:
    client = Client(REMOTE_ADDR=ip)
    return client.post("/admin/login/", {"username": email, "password": password}).status_code


@pytest.mark.parametrize(
    "variant", ["owner@example.com", "OWNER@example.com", " owner@EXAMPLE.com"]
)
def test_an_attacker_cannot_lock_the_owner_out(variant: str, clock: Clock) -> None:
    owner = UserFactory.create(email="owner@example.com", is_staff=True)
    statuses = [api_login(variant, f"guess-{n}", ATTACKER).status_code for n in range(20)]
    assert statuses[:5] == [400] * 5
    assert set(statuses[5:]) == {429}
    assert admin_login(owner.email, "guess", ATTACKER) == 429
    # The owner, at their own address, through both doors.
    assert api_login(owner.email, DEFAULT_PASSWORD, OWNER).status_code == 200
    assert admin_login(owner.email, DEFAULT_PASSWORD, OWNER) == 302


def test_one_address_guessing_as_fast_as_allowed_never_reaches_the_email_limit(
    clock: Clock, settings: Any
) -> None:
    owner = UserFactory.create(email="owner@example.com")
    failures = 0
    end = clock.time + settings.LOGIN_FAILURE_WINDOW_SECONDS
    while clock.time < end:
        response = api_login(owner.email, f"guess-{failures}", ATTACKER)
        if response.status_code == 429:
            clock.time += max(int(response["Retry-After"]), 1)
            continue
        assert response.status_code == 400
        failures += 1
    assert 5 < failures < settings.LOGIN_FREE_FAILURES_PER_EMAIL / 4
    assert api_login(owner.email, DEFAULT_PASSWORD, OWNER).status_code == 200


def test_the_back_off_doubles_up_to_its_cap(clock: Clock, settings: Any) -> None:
    settings.LOGIN_BACKOFF_BASE_SECONDS = 30
    settings.LOGIN_BACKOFF_MAX_SECONDS = 200
    UserFactory.create(email="ann@example.com")
    for n in range(5):
        assert api_login("ann@example.com", f"guess-{n}", ATTACKER).status_code == 400
    waits = []
    for n in range(5):
        refused = api_login("ann@example.com", f"again-{n}", ATTACKER)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "throttled"
        waits.append(int(refused["Retry-After"]))
        clock.time += waits[-1]
        assert api_login("ann@example.com", f"again-{n}", ATTACKER).status_code == 400
    assert waits == [30, 60, 120, 200, 200]


def test_the_right_password_waits_too_while_backing_off(clock: Clock) -> None:
    UserFactory.create(email="ann@example.com")
    for n in range(5):
        api_login("ann@example.com", f"guess-{n}", ATTACKER)
    assert api_login("ann@example.com", DEFAULT_PASSWORD, ATTACKER).status_code == 429
    assert not AuthToken.objects.exists()


def test_guessing_from_many_addresses_backs_off_per_email(clock: Clock, settings: Any) -> None:
    settings.LOGIN_FREE_FAILURES_PER_EMAIL = 6
    UserFactory.create(email="ann@example.com")
    for n in range(6):
        assert api_login("ann@example.com", "guess", f"203.0.113.{n}").status_code == 400
    refused = api_login("ann@example.com", DEFAULT_PASSWORD, "203.0.113.99")
    assert refused.status_code == 429
    clock.time += int(refused["Retry-After"])
    assert api_login("ann@example.com", DEFAULT_PASSWORD, OWNER).status_code == 200


def test_a_successful_login_clears_the_clients_count(clock: Clock) -> None:
    UserFactory.create(email="ann@example.com")
    for n in range(4):
        api_login("ann@example.com", f"guess-{n}", OWNER)
    assert api_login("ann@example.com", DEFAULT_PASSWORD, OWNER).status_code == 200
    for n in range(5):
        assert api_login("ann@example.com", f"typo-{n}", OWNER).status_code == 400


def test_failures_are_counted_for_unknown_emails_too(clock: Clock) -> None:
    statuses = [api_login("nobody@example.com", "x", ATTACKER).status_code for _ in range(6)]
    assert statuses == [400] * 5 + [429]
