"""core.middleware: oversized bodies are refused before parsing."""

import pytest
from django.test import Client

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
