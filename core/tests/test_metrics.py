"""core.metrics: /metrics is served to loopback or token holders only."""

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_loopback_clients_may_scrape_without_a_token() -> None:
    response = Client(REMOTE_ADDR="127.0.0.1").get("/metrics")
    assert response.status_code == 200
    assert b"db_routed_total" in response.content


@pytest.mark.parametrize(
    ("remote_addr", "forwarded_for"), [("203.0.113.7", ""), ("127.0.0.1", "203.0.113.7")]
)
def test_others_are_refused_without_a_token(remote_addr: str, forwarded_for: str) -> None:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    response = Client(REMOTE_ADDR=remote_addr).get("/metrics", headers=headers)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_with_a_token_only_its_holders_may_scrape(settings) -> None:
    settings.METRICS_TOKEN = "scrape-secret"
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 403
    wrong = Client(REMOTE_ADDR="203.0.113.7", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.get("/metrics").status_code == 403
    right = Client(REMOTE_ADDR="203.0.113.7", HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert right.get("/metrics").status_code == 200
