"""The served OpenAPI document is valid OpenAPI 3 and covers every route."""

import pytest
import yaml
from django.core.management import call_command
from django.test import Client
from openapi_spec_validator import validate

from core.tests.test_owasp_api import production_setting
from users.tests.factories import UserFactory

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


def test_docs_page_has_no_inline_script_or_style() -> None:
    page = Client().get("/api/docs/").content.decode()
    assert "<style" not in page
    assert "<script>" not in page  # every script has a src
    script = Client().get("/api/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")


@pytest.mark.parametrize("path", ["/api/schema/", "/api/schema/?format=json", "/api/docs/"])
def test_schema_and_docs_are_staff_only_unless_public(path: str, settings, client_for) -> None:
    settings.API_DOCS_PUBLIC = False
    assert Client().get(path).status_code in {401, 403}
    assert client_for(UserFactory.create()).get(path).status_code == 403
    assert client_for(UserFactory.create(is_staff=True)).get(path).status_code == 200
    session = Client()
    session.force_login(UserFactory.create(is_staff=True))
    assert session.get(path).status_code == 200


def test_production_settings_keep_the_docs_for_staff() -> None:
    assert production_setting("API_DOCS_PUBLIC") is False


@pytest.mark.parametrize("path", ["/api/v1/users/", "/api/v1/users/{id}/", "/api/v1/users/me/"])
def test_conditional_reads_are_documented(path: str) -> None:
    schema = yaml.safe_load(Client().get("/api/schema/").content)
    operation = schema["paths"][path]["get"]
    assert "If-None-Match" in {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    for status in ("200", "304"):
        assert {"ETag", "Cache-Control", "Vary"} <= set(operation["responses"][status]["headers"])
    assert "content" not in operation["responses"]["304"]
