"""core.observability.request_metrics: each request updates the series the alerts and
dashboard read."""

import pytest
from django.test import Client
from prometheus_client import REGISTRY

pytestmark = pytest.mark.django_db

VIEW = "healthz"


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _snapshot() -> dict[str, float]:
    return {
        "latency": _value("django_http_requests_latency_including_middlewares_seconds_count"),
        "status": _value("django_http_responses_total_by_status_total", status="200"),
        "status_view_method": _value(
            "django_http_responses_total_by_status_view_method_total",
            status="200",
            view=VIEW,
            method="GET",
        ),
        "view_latency": _value(
            "django_http_requests_latency_seconds_by_view_method_count", view=VIEW, method="GET"
        ),
        "by_method": _value("django_http_requests_total_by_method_total", method="GET"),
    }


def test_a_request_updates_the_series_that_are_read_and_no_other() -> None:
    before = _snapshot()
    assert Client().get("/healthz").status_code == 200
    after = _snapshot()
    assert after["latency"] == before["latency"] + 1
    assert after["status"] == before["status"] + 1
    assert after["status_view_method"] == before["status_view_method"] + 1
    assert after["view_latency"] == before["view_latency"] + 1
    assert after["by_method"] == before["by_method"]


def test_an_unknown_route_is_counted_under_its_status() -> None:
    before = _value("django_http_responses_total_by_status_total", status="404")
    assert Client().get("/no-such-page").status_code == 404
    assert _value("django_http_responses_total_by_status_total", status="404") == before + 1
