"""Look-alike accounts: emails are normalized (NFKC, IDNA domain), and invisible,
control and format characters are refused in emails and display names."""

import pytest
from rest_framework.test import APIClient

from users.models import User, normalize_email, validate_visible_text
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

STRONG = "violet-harbour-lantern-42"
INVISIBLE = {
    "zero-width space": "\u200b",
    "zero-width joiner": "\u200d",
    "zero-width non-joiner": "\u200c",
    "word joiner": "\u2060",
    "soft hyphen": "\u00ad",
    "byte order mark": "\ufeff",
    "right-to-left override": "\u202e",
    "left-to-right mark": "\u200e",
    "hangul filler": "\u3164",
    "variation selector": "\ufe0f",
    "combining grapheme joiner": "\u034f",
    "tag character": "\U000e0041",
    "braille blank": "\u2800",
    "line separator": "\u2028",
    "newline": "\n",
    "null": "\x00",
}


def sign_up(email: str, display_name: str = "Ann") -> tuple[int, dict]:
    response = APIClient().post(
        "/api/v1/users/",
        {"email": email, "password": STRONG, "display_name": display_name},
        format="json",
    )
    return response.status_code, response.json()


@pytest.mark.parametrize("char", INVISIBLE.values(), ids=INVISIBLE.keys())
@pytest.mark.parametrize("where", ["local", "domain"])
def test_invisible_characters_in_an_email_are_refused(char: str, where: str) -> None:
    UserFactory.create(email="ann@example.com")
    email = f"a{char}nn@example.com" if where == "local" else f"ann@exa{char}mple.com"
    status, body = sign_up(email)
    assert status == 400, body
    assert "email" in body["error"]["fields"]
    assert User.objects.count() == 1


@pytest.mark.parametrize("char", INVISIBLE.values(), ids=INVISIBLE.keys())
def test_invisible_characters_in_a_display_name_are_refused(char: str, client_for) -> None:
    status, body = sign_up("ann@example.com", display_name=f"Ann{char}ie")
    assert status == 400, body
    assert "display_name" in body["error"]["fields"]
    user = UserFactory.create(display_name="Ann")
    response = client_for(user).patch(
        f"/api/v1/users/{user.pk}/", {"display_name": f"A{char}nn"}, format="json"
    )
    assert response.status_code == 400
    assert "display_name" in response.json()["error"]["fields"]


@pytest.mark.parametrize(
    "variant",
    [
        "ANN@EXAMPLE.COM",
        "\uff41nn@example.com",  # full-width a
        "ann@\uff45xample.com",  # full-width e
        " ann@example.com ",
        "ann@EXAMPLE.com",
    ],
)
def test_variants_of_a_taken_email_are_the_same_email(variant: str) -> None:
    UserFactory.create(email="ann@example.com")
    status, body = sign_up(variant)
    assert status == 400
    assert "already exists" in str(body["error"]["fields"]["email"])


def test_a_unicode_domain_is_stored_in_its_ascii_form() -> None:
    # A Cyrillic a (U+0430) in the domain: a different domain, and it is shown as one.
    status, body = sign_up("ann@ex\u0430mple.com")
    assert status == 201, body
    assert body["email"] == "ann@xn--exmple-4nf.com"
    assert body["email"] != "ann@example.com"


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("Ann@Example.COM", "ann@example.com"),
        ("ann@b\u00fccher.example", "ann@xn--bcher-kva.example"),
        ("\uff21nn@example.com", "ann@example.com"),
        ("ann@exa\u200bmple.com", "ann@exa\u200bmple.com"),  # left for the validator
    ],
)
def test_normalize_email(raw: str, canonical: str) -> None:
    assert normalize_email(raw) == canonical


def test_visible_text_passes() -> None:
    validate_visible_text("Zoë Ångström-Ñúñez 李小龍")
