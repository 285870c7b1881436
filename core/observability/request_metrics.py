"""Per-request metrics: django-prometheus's middleware, recording only what is read.

django-prometheus's middleware updates about twenty series a request (by method, by
transport, by view and transport, by charset, request and response body sizes, counts
before and after the stack, ...). Under gunicorn each update is a write to a memory-mapped
file, and together they cost about a tenth of a warm read's CPU. These subclasses record
what the alerts, the dashboard and docs/observability.md use: the whole-stack latency,
responses by status and by status, view and method, latency by view and method, and
exceptions by type and view (django-prometheus's own `process_exception`). The other
series are still registered by django-prometheus, so they are exported, and stay at zero.
"""

from django.http import HttpRequest, HttpResponseBase
from django_prometheus import middleware
from django_prometheus.utils import Time, TimeSince

_UNNAMED_VIEW = "<unnamed view>"


class PrometheusBeforeMiddleware(middleware.PrometheusBeforeMiddleware):
    """First in the stack: times the whole of it (the latency the alerts read)."""

    def process_request(self, request: HttpRequest) -> None:
        """Start the whole-stack clock."""
        request.prometheus_before_middleware_event = Time()  # type: ignore[attr-defined]

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        """Observe the whole-stack latency."""
        started = getattr(request, "prometheus_before_middleware_event", None)
        if started is None:
            self.metrics.requests_unknown_latency_before.inc()
        else:
            self.metrics.requests_latency_before.observe(TimeSince(started))
        return response


class PrometheusAfterMiddleware(middleware.PrometheusAfterMiddleware):
    """Last in the stack: responses by status, view and method, and the view's latency."""

    def process_request(self, request: HttpRequest) -> None:
        """Start the view's clock."""
        request.prometheus_after_middleware_event = Time()  # type: ignore[attr-defined]

    def process_view(self, *args: object, **kwargs: object) -> None:
        """Nothing: requests are counted once, by their response."""

    def process_template_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        """Nothing: responses are not counted by template."""
        return response

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        """Count the response by status (and view and method); observe the view's latency."""
        method = self._method(request)
        match = getattr(request, "resolver_match", None)
        view = _UNNAMED_VIEW if match is None or match.view_name is None else match.view_name
        status = str(response.status_code)
        self.metrics.responses_by_status.labels(status).inc()
        self.metrics.responses_by_status_view_method.labels(status, view, method).inc()
        started = getattr(request, "prometheus_after_middleware_event", None)
        if started is None:
            self.metrics.requests_unknown_latency.inc()
        else:
            self.metrics.requests_latency_by_view_method.labels(view, request.method).observe(
                TimeSince(started)
            )
        return response
