"""Changing one's email: a signed, expiring link mailed to the new address applies it, and
the PATCH answers alike whether or not the address is taken."""

import re
from typing import Any
from urllib.parse import unquote

import pytest
from django.core import mail, signing
from rest_framework.test import APIClient

from events.models import OutboxEvent
from users import services
from users.models import User
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

CONFIRM = "/api/v1/users/confirm-email/"


@pytest.fixture
def ann() -> User:
    return UserFactory.create(email="ann@example.com", display_name="Ann")


def patch_email(client: APIClient, user: User, email: str, capture: Any) -> Any:
    with capture(execute=True):
        return client.patch(f"/api/v1/users/{user.pk}/", {"email": email}, format="json")


def mailed_token(to: str) -> str:
    (message,) = [m for m in mail.outbox if m.to == [to]]
    match = re.search(r"\?token=(\S+)", str(message.body))
    assert match, message.body
    return unquote(match.group(1))


def confirm(token: Any) -> Any:
    return APIClient().post(CONFIRM, {"token": token}, format="json")


def updated_events(user: User) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(aggregate_id=str(user.pk), topic="user.updated"))


@pytest.mark.parametrize("taken", ["bob@example.com", "BOB@example.com", " bob@EXAMPLE.com"])
def test_the_answer_is_the_same_whether_or_not_the_address_is_taken(
    ann: User,
    taken: str,
    client_for: Any,
    eager_celery: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    UserFactory.create(email="bob@example.com")
    client = client_for(ann)
    to_taken = patch_email(client, ann, taken, django_capture_on_commit_callbacks)
    to_free = patch_email(client, ann, "fresh@example.com", django_capture_on_commit_callbacks)
    assert to_taken.status_code == to_free.status_code == 200
    assert to_taken.json() == to_free.json()
    assert to_taken.json()["email"] == "ann@example.com"
    assert User.objects.get(pk=ann.pk).email == "ann@example.com"


def test_a_free_address_gets_a_link_that_applies_the_change(
    ann: User, client_for: Any, eager_celery: None, django_capture_on_commit_callbacks: Any
) -> None:
    patch_email(client_for(ann), ann, "Fresh@Example.com", django_capture_on_commit_callbacks)
    assert not updated_events(ann)
    token = mailed_token("fresh@example.com")

    response = confirm(token)

    assert response.status_code == 204
    assert User.objects.get(pk=ann.pk).email == "fresh@example.com"
    (event,) = updated_events(ann)
    assert event.payload["changed"] == ["email"]
    assert event.payload["email"] == "fresh@example.com"
    # Once used, the link is spent.
    assert confirm(token).status_code == 400


def test_the_old_address_is_told_once_the_change_commits(
    ann: User, eager_celery: None, django_capture_on_commit_callbacks: Any
) -> None:
    token = services.email_change_token(user=ann, new_email="fresh@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        assert confirm(token).status_code == 204
    (notice,) = mail.outbox
    assert notice.to == ["ann@example.com"]
    assert "fresh@example.com" in notice.body


def test_a_taken_address_gets_a_notice_and_no_link(
    ann: User, client_for: Any, eager_celery: None, django_capture_on_commit_callbacks: Any
) -> None:
    UserFactory.create(email="bob@example.com")
    patch_email(client_for(ann), ann, "bob@example.com", django_capture_on_commit_callbacks)
    (message,) = mail.outbox
    assert message.to == ["bob@example.com"]
    assert "token=" not in message.body
    assert "Ann" not in message.body
    assert User.objects.get(pk=ann.pk).email == "ann@example.com"


def test_display_name_and_email_together(
    ann: User, client_for: Any, eager_celery: None, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(ann).patch(
            f"/api/v1/users/{ann.pk}/",
            {"email": "fresh@example.com", "display_name": "Annie"},
            format="json",
        )
    assert response.status_code == 200
    assert response.json()["display_name"] == "Annie"
    assert response.json()["email"] == "ann@example.com"
    assert mailed_token("fresh@example.com")


def test_an_address_taken_before_confirming_is_refused(ann: User) -> None:
    token = services.email_change_token(user=ann, new_email="late@example.com")
    UserFactory.create(email="late@example.com")
    response = confirm(token)
    assert response.status_code == 400
    assert "email" in response.json()["error"]["fields"]
    assert User.objects.get(pk=ann.pk).email == "ann@example.com"


@pytest.mark.parametrize(
    "forge",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # tampered signature
        lambda t: signing.dumps(signing.loads(t, salt=services.EMAIL_CHANGE_SALT)),  # no salt
        lambda t: signing.dumps(
            {**signing.loads(t, salt=services.EMAIL_CHANGE_SALT), "to": "evil@example.com"}
        ),
        lambda t: "",
        lambda t: "garbage",
        lambda t: 12345,
        lambda t: ["list"],
        lambda t: signing.dumps("not-a-dict", salt=services.EMAIL_CHANGE_SALT),
    ],
    ids=["tampered", "unsalted", "resigned", "empty", "garbage", "number", "list", "scalar"],
)
def test_forged_tokens_are_refused(ann: User, forge: Any) -> None:
    token = services.email_change_token(user=ann, new_email="fresh@example.com")
    response = confirm(forge(token))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert User.objects.get(pk=ann.pk).email == "ann@example.com"


def test_an_expired_link_is_refused(ann: User, settings: Any) -> None:
    token = services.email_change_token(user=ann, new_email="fresh@example.com")
    settings.EMAIL_CHANGE_TOKEN_MAX_AGE = -1
    assert confirm(token).status_code == 400
    assert User.objects.get(pk=ann.pk).email == "ann@example.com"


def test_a_link_stops_working_once_the_email_changed_otherwise(ann: User) -> None:
    first = services.email_change_token(user=ann, new_email="one@example.com")
    second = services.email_change_token(user=ann, new_email="two@example.com")
    assert confirm(second).status_code == 204
    assert confirm(first).status_code == 400
    assert User.objects.get(pk=ann.pk).email == "two@example.com"


def test_a_deactivated_users_link_is_refused(ann: User) -> None:
    token = services.email_change_token(user=ann, new_email="fresh@example.com")
    services.user_deactivate(user=ann)
    assert confirm(token).status_code == 400


def test_staff_change_another_users_email_at_once(ann: User, client_for: Any) -> None:
    staff = UserFactory.create(is_staff=True)
    response = client_for(staff).patch(
        f"/api/v1/users/{ann.pk}/", {"email": "moved@example.com"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["email"] == "moved@example.com"


def test_the_same_email_sends_nothing(
    ann: User, client_for: Any, eager_celery: None, django_capture_on_commit_callbacks: Any
) -> None:
    patch_email(client_for(ann), ann, "ANN@example.com", django_capture_on_commit_callbacks)
    assert not mail.outbox
