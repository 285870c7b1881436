"""No password, token, secret or Authorization header reaches a log line, whatever the path:
sign-up, login, a failed login, bearer requests, validation errors and crashes."""

import pytest
from rest_framework.test import APIClient

from users import services

pytestmark = pytest.mark.django_db

PASSWORD = "violet-harbour-lantern-42"
WRONG_PASSWORD = "amber-quarry-tundra-77"
WEAK_PASSWORD = "zq"


def test_no_credential_reaches_the_logs(log_output, settings, monkeypatch) -> None:
    settings.DEBUG_PROPAGATE_EXCEPTIONS = False
    client = APIClient(raise_request_exception=False)
    secrets = [PASSWORD, WRONG_PASSWORD, WEAK_PASSWORD]

    signup = client.post(
        "/api/v1/users/",
        {"email": "ann@example.com", "password": PASSWORD, "display_name": "Ann"},
        format="json",
    )
    assert signup.status_code == 201
    login = client.post(
        "/api/v1/auth/token/", {"email": "ann@example.com", "password": PASSWORD}, format="json"
    )
    assert login.status_code == 200
    token = login.json()["token"]
    secrets.append(token)

    bad_login = client.post(
        "/api/v1/auth/token/",
        {"email": "ann@example.com", "password": WRONG_PASSWORD},
        format="json",
    )
    assert bad_login.status_code == 400

    me = client.get("/api/v1/users/me/", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    forged = "0123456789abcdef" * 4
    secrets.append(forged)
    refused = client.get("/api/v1/users/me/", headers={"Authorization": f"Bearer {forged}"})
    assert refused.status_code == 401

    # Validation errors: a weak password, a wrong current password, a malformed body.
    weak = client.post(
        "/api/v1/users/",
        {"email": "bob@example.com", "password": WEAK_PASSWORD},
        format="json",
    )
    assert weak.status_code == 400
    change = client.post(
        f"/api/v1/users/{me.json()['id']}/password/",
        {"current_password": WRONG_PASSWORD, "password": PASSWORD + "-new"},
        format="json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert change.status_code == 400
    secrets.append(PASSWORD + "-new")
    malformed = client.post(
        "/api/v1/auth/token/",
        data=f'{{"email": "ann@example.com", "password": "{PASSWORD}"',
        content_type="application/json",
    )
    assert malformed.status_code == 400

    # A crash whose exception message carries the credentials it was called with.
    def crash(*, request: object, email: str, password: str) -> None:
        raise RuntimeError(f"login failed: email={email} password={password}")

    monkeypatch.setattr(services, "auth_token_create", crash)
    crashed = client.post(
        "/api/v1/auth/token/", {"email": "ann@example.com", "password": PASSWORD}, format="json"
    )
    assert crashed.status_code == 500

    logged = log_output.text()
    assert "RuntimeError: login failed" in logged, "the crash must have been logged"
    assert len(log_output.events("request")) == 9
    for secret in secrets:
        assert secret not in logged
    assert "Bearer " + token[:8] not in logged
