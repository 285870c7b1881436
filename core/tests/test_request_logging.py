"""core.observability.request_logging: one JSON line per request, and the request id around it."""

import re

import pytest
from rest_framework.test import APIClient

from core.observability.request_logging import current_request_id, request_id_from
from users import services

pytestmark = pytest.mark.django_db

GENERATED_ID = re.compile(r"[0-9a-f]{32}")


def test_one_line_per_request_with_every_field(log_output, user, client_for) -> None:
    client = client_for(user)
    response = client.get(
        "/api/v1/users/me/",
        headers={"X-Request-ID": "edge-4f1c.2_a", "User-Agent": "probe/1.0"},
        REMOTE_ADDR="198.51.100.4",
    )
    assert response.status_code == 200
    assert response["X-Request-ID"] == "edge-4f1c.2_a"
    (line,) = log_output.events("request")
    duration = line.pop("duration_ms")
    assert isinstance(duration, float)
    assert duration >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", line.pop("time"))
    assert line == {
        "event": "request",
        "level": "info",
        "logger": "core.request",
        "method": "GET",
        "path": "/api/v1/users/me/",
        "route": "api/v1/users/me/",
        "view": "user-me",
        "status": 200,
        "user_id": str(user.pk),
        "client_ip": "198.51.100.4",
        "user_agent": "probe/1.0",
        "request_id": "edge-4f1c.2_a",
    }


@pytest.mark.parametrize("incoming", ["", "has space", "x" * 201, "semi;colon", "ünï"])
def test_malformed_request_ids_are_replaced(log_output, incoming: str) -> None:
    headers = {"X-Request-ID": incoming} if incoming else {}
    response = APIClient().get("/api/v1/users/me/", headers=headers)
    assert response.status_code == 401
    generated = response["X-Request-ID"]
    assert GENERATED_ID.fullmatch(generated)
    (line,) = log_output.events("request")
    assert line["request_id"] == generated
    assert line["user_id"] is None
    assert line["status"] == 401


def test_request_id_from_accepts_the_documented_alphabet_up_to_200() -> None:
    assert request_id_from("A-z_0.9") == "A-z_0.9"
    assert request_id_from("x" * 200) == "x" * 200
    assert request_id_from("x" * 201) != "x" * 201
    assert request_id_from(None) != request_id_from(None)


def test_forwarded_for_is_ignored_without_trusted_proxies(log_output, settings) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 0}
    APIClient().get("/healthz", REMOTE_ADDR="10.0.0.2", headers={"X-Forwarded-For": "203.0.113.66"})
    (line,) = log_output.events("request")
    assert line["client_ip"] == "10.0.0.2"


def test_forwarded_for_is_read_as_many_hops_back_as_trusted(log_output, settings) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    # A client may prepend anything; only the entry our one proxy appended is believed.
    APIClient().get(
        "/healthz",
        REMOTE_ADDR="10.0.0.2",
        headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.66"},
    )
    (line,) = log_output.events("request")
    assert line["client_ip"] == "203.0.113.66"


def test_lines_logged_while_serving_carry_the_request_context(log_output) -> None:
    response = APIClient().post(
        "/api/v1/auth/token/",
        {"email": "nobody@example.com", "password": "wrong-but-long-enough"},
        format="json",
        headers={"X-Request-ID": "login-1"},
    )
    assert response.status_code == 400
    warning = next(line for line in log_output.lines() if line["logger"] == "django.request")
    assert warning["level"] == "warning"
    assert warning["request_id"] == "login-1"
    assert warning["path"] == "/api/v1/auth/token/"
    assert warning["method"] == "POST"


def test_a_crash_logs_its_traceback_and_an_error_line(log_output, monkeypatch) -> None:
    def crash(**kwargs: object) -> None:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(services, "auth_token_create", crash)
    client = APIClient(raise_request_exception=False)
    response = client.post(
        "/api/v1/auth/token/",
        {"email": "ann@example.com", "password": "irrelevant-here-123"},
        format="json",
        headers={"X-Request-ID": "crash-1"},
    )
    assert response.status_code == 500
    assert response["X-Request-ID"] == "crash-1"
    error = next(line for line in log_output.lines() if line["logger"] == "django.request")
    assert error["level"] == "error"
    assert error["request_id"] == "crash-1"
    assert "RuntimeError: database on fire" in error["exception"]
    (line,) = log_output.events("request")
    assert line["status"] == 500
    assert line["level"] == "error"


def test_an_unresolved_session_user_is_not_loaded_for_the_log(
    log_output, django_assert_num_queries
) -> None:
    with django_assert_num_queries(0):
        APIClient().get("/healthz", headers={"Cookie": "sessionid=abc"})
    (line,) = log_output.events("request")
    assert line["user_id"] is None


def test_current_request_id_is_the_one_being_served(monkeypatch) -> None:
    seen = []

    def spy(**kwargs: object) -> None:
        seen.append(current_request_id())
        raise services.InvalidCredentials("no")

    monkeypatch.setattr(services, "auth_token_create", spy)
    APIClient().post(
        "/api/v1/auth/token/",
        {"email": "ann@example.com", "password": "whatever-it-is-1"},
        format="json",
        headers={"X-Request-ID": "seen-1"},
    )
    assert seen == ["seen-1"]
