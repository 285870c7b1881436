"""The served OpenAPI document is valid OpenAPI 3 and covers every route."""

import pytest
import yaml
from django.core.management import call_command
from django.test import Client
from openapi_spec_validator import validate

pytestmark = pytest.mark.django_db


def test_schema_is_valid_openapi_3() -> None:
    response = Client().get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    validate(schema)
    assert schema["openapi"].startswith("3.")
    assert {
        "/api/v1/users/",
        "/api/v1/users/{id}/",
        "/api/v1/users/{id}/password/",
        "/api/v1/users/me/",
        "/api/v1/auth/token/",
        "/api/v1/auth/logout/",
    } <= set(schema["paths"])


def test_docs_page_is_served_without_a_cdn() -> None:
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/static/drf_spectacular_sidecar/" in page
    assert "cdn." not in page
    assert "unpkg" not in page


def test_schema_generates_without_warnings(tmp_path) -> None:
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(tmp_path / "s.yaml"))
