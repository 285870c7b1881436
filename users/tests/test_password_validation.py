"""users.password_validation, alone and through sign-up."""

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from users.models import User
from users.password_validation import (
    EmailDerivedPasswordValidator,
    MinimumDistinctCharactersValidator,
)

CAROL = User(email="carol.smith@example.com")


@pytest.mark.parametrize(
    "password", [" " * 8, " " * 20, "aaaaaaaaaaaa", "abababababab", "\t\t\t\t\t\t\t\t", "1212aaaa"]
)
def test_too_few_distinct_characters_are_refused(password: str) -> None:
    with pytest.raises(ValidationError) as raised:
        MinimumDistinctCharactersValidator().validate(password)
    assert "too few different characters" in raised.value.messages[0]


@pytest.mark.parametrize(
    "password",
    [
        "carol.smith",
        "Carol.Smith",
        "carolsmith",
        "smith.carol",
        "carol_smith_1987",
        "CarolSmith!!2024",
        "carol.smith@example.com",
        "example-carol-42",
        "smithsmith",
    ],
)
def test_passwords_made_of_the_email_are_refused(password: str) -> None:
    with pytest.raises(ValidationError) as raised:
        EmailDerivedPasswordValidator().validate(password, user=CAROL)
    assert raised.value.messages == ["This password is too close to your email address."]


@pytest.mark.parametrize(
    "password", ["violet-harbour-lantern-42", "carol-loves-the-seaside", "a-long-test-password-1"]
)
def test_good_passwords_pass(password: str) -> None:
    validate_password(password, user=CAROL)


def test_validators_are_configured() -> None:
    for password in (" " * 8, "carol.smith"):
        with pytest.raises(ValidationError):
            validate_password(password, user=CAROL)


@pytest.mark.django_db
@pytest.mark.parametrize("password", [" " * 8, "carol.smith"])
def test_sign_up_refuses_them_with_a_clear_message(password: str) -> None:
    response = APIClient().post(
        "/api/v1/users/",
        {"email": "carol.smith@example.com", "password": password},
        format="json",
    )
    assert response.status_code == 400
    messages = response.json()["error"]["fields"]["password"]
    assert any("email address" in m or "different characters" in m for m in messages)
    assert not User.objects.filter(email="carol.smith@example.com").exists()
