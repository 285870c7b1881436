"""The Prometheus scrape endpoint, closed to the public.

With METRICS_TOKEN set, a scrape needs `Authorization: Bearer <token>`. Without it, only
clients on the loopback interface that did not come through a proxy may scrape.

Under gunicorn (PROMETHEUS_MULTIPROC_DIR set, see core/observability/gunicorn_hooks.py) a
scrape sums every worker's counters, gauges and histograms from their files. Collectors that
read shared state when scraped (the outbox backlog, from the database) are not in those
files: register them with `register_live_collector` so they are scraped in both modes.
django-prometheus's export view builds the multiprocess registry without them, hence the
few lines of export here.
"""

import hmac
import ipaddress
import os

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from core.http.exceptions import error_response

_live_collectors: list[Collector] = []


def register_live_collector(collector: Collector) -> None:
    """Scrape `collector` on every /metrics request, with or without multiprocess mode.

    For collectors whose figures are read at scrape time from state all processes share
    (a database, Redis), so any one worker reports the whole truth. Idempotent.
    """
    if collector in _live_collectors:
        return
    _live_collectors.append(collector)
    REGISTRY.register(collector)


def unregister_live_collector(collector: Collector) -> None:
    """Undo `register_live_collector` (tests)."""
    if collector in _live_collectors:
        _live_collectors.remove(collector)
        REGISTRY.unregister(collector)


def scrape_registry() -> Collector:
    """What a scrape reports: all workers' files plus live collectors, or this process."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    for collector in _live_collectors:
        registry.register(collector)
    return registry


def metrics(request: HttpRequest) -> HttpResponse:
    """Serve the metrics of this process (or of all workers, in multiprocess mode)."""
    if not may_scrape(request):
        return error_response(status=403, code="permission_denied", message="Metrics are private.")
    return HttpResponse(generate_latest(scrape_registry()), content_type=CONTENT_TYPE_LATEST)


def may_scrape(request: HttpRequest) -> bool:
    """True for a scraper: the METRICS_TOKEN bearer, or with no token a direct loopback client."""
    if settings.METRICS_TOKEN:
        presented = request.headers.get("Authorization", "")
        expected = f"Bearer {settings.METRICS_TOKEN}"
        return hmac.compare_digest(presented.encode(), expected.encode())
    if "X-Forwarded-For" in request.headers:
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False
