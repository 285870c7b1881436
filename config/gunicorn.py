"""gunicorn configuration, read with `gunicorn -c config/gunicorn.py config.wsgi`.

Every value comes from the environment (docs/settings.md, "Server processes").
"""

import multiprocessing
import os
import signal
from types import FrameType
from typing import Any

from core.observability.gunicorn_hooks import (
    child_exit,
    on_starting,
    post_fork,
    use_multiprocess_metrics,
)

# Metrics: every worker's figures add up in /metrics (prometheus_client's multiprocess
# mode, core/observability/gunicorn_hooks.py). The directory must be set before anything
# imports prometheus_client, which preloading the app below does; the call refuses to go on
# if something already has.
use_multiprocess_metrics(port=os.environ.get("PORT", "8000"))
__all__ = ["child_exit", "on_starting", "post_fork"]

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# Django is synchronous: one worker a core plus one to cover I/O waits.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() + 1))
# Sync workers by default: measured against gthread with four threads (docs/benchmarks.md,
# read path), keep-alive saved no CPU per read, and four threads sharing a worker's GIL
# raised the p99 from about 50 ms to 100-190 ms. gthread stays a setting for deployments
# whose clients sit behind slow links, where a sync worker would wait on each in turn.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# SIGTERM stops accepting new connections at once and lets in-flight requests finish for
# this long before workers are killed; Kubernetes' terminationGracePeriodSeconds must be
# longer (deploy/k8s/base/web/deployment.yaml).
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "25"))
keepalive = 5
# Restart workers now and then so a slow leak cannot grow without bound.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "10000"))
max_requests_jitter = max_requests // 10
# Load Django once in the master and fork: faster starts, shared memory pages. Safe here
# because nothing opens a connection at import time (database pools, Redis and Celery
# connect lazily, in each worker); GUNICORN_PRELOAD=false turns it off if that changes.
preload_app = os.environ.get("GUNICORN_PRELOAD", "true").lower() in ("1", "true", "yes")
# Heartbeat files on tmpfs: the image runs with a read-only root filesystem.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 (tmpfs heartbeats)  # nosec B108

# Off by default: the application already writes one richer JSON line per request
# (core/observability/request_logging.py); gunicorn's own line adds only requests Django never saw.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "") or None
errorlog = "-"
logger_class = "config.gunicorn_logger.JsonAccessLogger"


def post_worker_init(worker: Any) -> None:
    """Make SIGTERM close this worker's copies of the listening sockets at once.

    The master closes its own on SIGTERM, but a worker busy with a slow request keeps
    the socket open until it finishes, so the kernel would keep queueing connections
    that nobody will ever serve. Closed everywhere, new connections are refused and the
    client (or load balancer) retries another instance straight away.
    """
    stop_after_this_request = worker.handle_exit

    def handle_exit(signum: int, frame: FrameType | None) -> None:
        stop_after_this_request(signum, frame)
        for listener in worker.sockets:
            listener.close()

    signal.signal(signal.SIGTERM, handle_exit)
