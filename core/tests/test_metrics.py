"""core.observability.metrics: /metrics is served to loopback or token holders only."""

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


class _Live:
    """A collector reading shared state at scrape time, like the events outbox's."""

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        yield GaugeMetricFamily("test_live_backlog", "Shared state.", value=7)


@pytest.fixture
def live_collector():
    from core.observability.metrics import register_live_collector, unregister_live_collector

    collector = _Live()
    register_live_collector(collector)
    register_live_collector(collector)  # idempotent
    yield collector
    unregister_live_collector(collector)


def test_live_collectors_are_scraped_in_single_process_mode(live_collector, monkeypatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    body = Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode()
    assert "test_live_backlog 7.0" in body


def test_multiprocess_scrapes_read_the_files_and_the_live_collectors(
    live_collector, monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    body = Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode()
    assert "test_live_backlog 7.0" in body
    # Per-process collectors (this process's CPU, the interpreter) are not in the files.
    assert "process_cpu_seconds_total" not in body
    assert "python_info" not in body
