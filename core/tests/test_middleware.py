"""core.http.middleware: oversized bodies are refused before parsing; token-authenticated
API requests skip the browser session machinery and keep every security header."""

import pytest
from django.test import Client
from knox.models import AuthToken

from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_body_over_the_limit_is_413(settings) -> None:
    settings.MAX_REQUEST_BODY_BYTES = 1000
    body = '{"email": "a@example.com", "password": "' + "x" * 2000 + '"}'
    response = Client().post("/api/v1/users/", body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_three_megabyte_json_is_refused_with_default_settings() -> None:
    body = '{"display_name": "' + "x" * (3 * 1024 * 1024) + '"}'
    response = Client().post("/api/v1/users/", body, content_type="application/json")
    assert response.status_code == 413


def test_body_under_the_limit_passes(settings) -> None:
    settings.MAX_REQUEST_BODY_BYTES = 10_000
    response = Client().post("/api/v1/users/", "{}", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_unparseable_content_length_is_400() -> None:
    response = Client().post(
        "/api/v1/users/", "{}", content_type="application/json", CONTENT_LENGTH="many"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_a_token_request_to_the_api_opens_no_session_and_keeps_the_security_headers() -> None:
    _, token = AuthToken.objects.create(user=UserFactory.create())
    response = Client().get("/api/v1/users/me/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert not hasattr(response.wsgi_request, "session")
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in response["Content-Security-Policy"]
    assert response["Referrer-Policy"] == "same-origin"


def test_a_session_request_to_the_api_still_uses_the_session() -> None:
    client = Client()
    client.force_login(UserFactory.create())
    response = client.get("/api/v1/users/me/")
    assert response.status_code == 200
    assert hasattr(response.wsgi_request, "session")


def test_another_authorization_scheme_leaves_the_session_in_charge() -> None:
    user = UserFactory.create()
    client = Client()
    client.force_login(user)
    response = client.get("/api/v1/users/me/", HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")
    assert response.status_code == 200
    assert response.json()["id"] == str(user.pk)


def test_a_bad_token_is_refused_even_with_a_session() -> None:
    client = Client()
    client.force_login(UserFactory.create())
    response = client.get("/api/v1/users/me/", HTTP_AUTHORIZATION="bearer not-a-token")
    assert response.status_code == 401


def test_a_token_header_outside_the_api_leaves_the_session_in_charge() -> None:
    client = Client()
    client.force_login(UserFactory.create(is_staff=True, is_superuser=True))
    response = client.get("/admin/", HTTP_AUTHORIZATION="Bearer anything")
    assert response.status_code == 200
