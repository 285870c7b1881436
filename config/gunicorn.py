"""gunicorn configuration, read with `gunicorn -c config/gunicorn.py config.wsgi`."""

import multiprocessing
import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# Django is synchronous: one worker a core plus one to cover I/O waits.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() + 1))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# SIGTERM lets in-flight requests finish for this long before workers are killed.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "25"))
keepalive = 5
# Restart workers now and then so a slow leak cannot grow without bound.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "10000"))
max_requests_jitter = max_requests // 10
accesslog = "-"
errorlog = "-"

# --- Metrics (issue 6): every worker's figures add up in /metrics -----------------------
# prometheus_client's multiprocess mode; see core/gunicorn_hooks.py. Must run before the
# app (and so prometheus_client) is imported, which preload_app does before on_starting.
from core.gunicorn_hooks import child_exit, on_starting, use_multiprocess_metrics  # noqa: E402

use_multiprocess_metrics(port=os.environ.get("PORT", "8000"))
__all__ = ["child_exit", "on_starting"]
