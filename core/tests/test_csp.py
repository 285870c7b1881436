"""A strict Content-Security-Policy on every kind of page the service serves."""

import pytest
from django.test import Client

from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PAGES = [
    "/admin/login/",
    "/admin/",
    "/admin/users/user/",
    "/api/docs/",
    "/api/v1/users/me/?format=api",
    "/api/v1/users/me/",
    "/healthz",
    "/no-such-page",
]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_carries_the_strict_policy(path: str) -> None:
    client = Client()
    client.force_login(UserFactory.create(is_staff=True, is_superuser=True))
    response = client.get(path)
    header = response["Content-Security-Policy"]
    policy = dict(part.split(" ", 1) for part in header.split("; "))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["object-src"] == "'none'"
    assert policy["base-uri"] == "'none'"
    assert "unsafe-inline" not in response["Content-Security-Policy"]
    assert "unsafe-eval" not in response["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/api/v1/users/?format=api", "/api/v1/users/me/?format=api"])
def test_the_browsable_api_has_no_inline_style(path: str) -> None:
    client = Client()
    client.force_login(UserFactory.create(is_staff=True))
    page = client.get(path).content.decode()
    assert "<style" not in page
    assert ' style="' not in page


def test_the_docs_page_has_no_inline_script_or_style() -> None:
    client = Client()
    client.force_login(UserFactory.create(is_staff=True))
    page = client.get("/api/docs/").content.decode()
    assert "<style" not in page
    assert "<script>" not in page
