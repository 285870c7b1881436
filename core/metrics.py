"""The Prometheus scrape endpoint, closed to the public.

With METRICS_TOKEN set, a scrape needs `Authorization: Bearer <token>`. Without it, only
clients on the loopback interface that did not come through a proxy may scrape.
"""

import hmac
import ipaddress

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django_prometheus.exports import ExportToDjangoView

from core.exceptions import error_response


def metrics(request: HttpRequest) -> HttpResponse:
    """Serve the metrics of this process (or of all workers, in multiprocess mode)."""
    if not _may_scrape(request):
        return error_response(status=403, code="permission_denied", message="Metrics are private.")
    return ExportToDjangoView(request)


def _may_scrape(request: HttpRequest) -> bool:
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
