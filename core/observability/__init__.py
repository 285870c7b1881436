"""What operators see of the service: structured logs (every line, one per request, the
worker's), Prometheus metrics (requests, tasks, process resources, summed across
gunicorn workers, served on /metrics) and the health endpoints
(docs/observability.md)."""
