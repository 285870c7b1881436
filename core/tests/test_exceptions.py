"""core.http.exceptions: one error shape for every failure, inside DRF views and outside."""

import json

import pytest
from django.core.exceptions import ValidationError
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from core.http import exceptions

pytestmark = pytest.mark.django_db


def error_of(response) -> dict:
    body = json.loads(response.content)
    assert set(body) == {"error"}
    assert isinstance(body["error"]["message"], str)
    return body["error"]


@pytest.mark.parametrize("path", ["/nope", "/api/v1/nope/", "/api/v1/users/x/y/z/"])
def test_unknown_routes_are_json_404(path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert error_of(response)["code"] == "not_found"


def test_malformed_json_is_400_parse_error(api_client: APIClient) -> None:
    response = api_client.post("/api/v1/users/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert error_of(response)["code"] == "parse_error"


def test_wrong_content_type_is_415(api_client: APIClient) -> None:
    response = api_client.post("/api/v1/users/", "<xml/>", content_type="application/xml")
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_domain_validation_error_becomes_field_errors() -> None:
    request = RequestFactory().get("/")
    response = exceptions.exception_handler(
        ValidationError({"email": ["Taken."]}), {"request": request, "view": None}
    )
    assert response is not None
    assert response.status_code == 400
    assert response.data == {
        "error": {
            "code": "validation_error",
            "message": "The request has invalid fields.",
            "fields": {"email": ["Taken."]},
        }
    }


def test_application_error_keeps_its_status_and_code() -> None:
    request = RequestFactory().get("/")
    error = exceptions.InvalidCredentials("Nope.")
    response = exceptions.exception_handler(error, {"request": request, "view": None})
    assert response is not None
    assert response.status_code == 400
    assert response.data == {"error": {"code": "invalid_credentials", "message": "Nope."}}


def test_unexpected_exceptions_are_left_to_the_500_handler() -> None:
    request = RequestFactory().get("/")
    assert exceptions.exception_handler(RuntimeError("boom"), {"request": request}) is None
    response = exceptions.server_error(request)
    assert response.status_code == 500
    assert error_of(response) == {"code": "server_error", "message": "Internal server error."}


def test_csrf_failure_has_the_shape(user) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.patch(
        f"/api/v1/users/{user.pk}/", {"display_name": "x"}, content_type="application/json"
    )
    assert response.status_code == 403
    assert error_of(response)["code"] in {"permission_denied", "csrf_failed"}
