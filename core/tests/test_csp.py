"""A strict Content-Security-Policy on every kind of page the service serves."""

from typing import Any, cast

import pytest
from csp.constants import NONCE, NONE, SELF
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory

from core.http.middleware import CSPMiddleware
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


def test_a_changed_policy_setting_changes_the_header(settings: Any) -> None:
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": [NONE]}}
    response = Client().get("/healthz")
    assert response["Content-Security-Policy"] == "default-src 'none'"


def test_a_response_with_its_own_policy_keeps_it() -> None:
    def view(request: HttpRequest) -> HttpResponse:
        response = HttpResponse()
        response._csp_update = {"img-src": ["https://images.example.com"]}  # type: ignore[attr-defined]
        return response

    response = cast(HttpResponse, CSPMiddleware(view)(RequestFactory().get("/somewhere")))
    policy = dict(part.split(" ", 1) for part in response["Content-Security-Policy"].split("; "))
    assert policy["img-src"] == "'self' data: https://images.example.com"
    assert policy["default-src"] == "'none'"


def test_a_nonce_used_by_the_page_is_in_its_policy(settings: Any) -> None:
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"script-src": [SELF, NONCE]}}

    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(str(request.csp_nonce))  # type: ignore[attr-defined]

    response = cast(HttpResponse, CSPMiddleware(view)(RequestFactory().get("/somewhere")))
    nonce = response.content.decode()
    assert f"'nonce-{nonce}'" in response["Content-Security-Policy"]
