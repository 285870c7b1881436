"""Celery task metrics, served by the worker on its own port (CELERY_METRICS_PORT).

Counts tasks that succeeded, failed or were retried, and times each run, by task name.
The prefork pool runs tasks in child processes, so the worker needs its own
PROMETHEUS_MULTIPROC_DIR (not the web server's): children write their figures there, the
main process serves their sum and empties the directory when it starts. With the solo or
threads pool it works without one.
"""

import logging
import os
import time
from pathlib import Path
from threading import Thread
from typing import Any
from wsgiref.simple_server import WSGIServer

from celery.signals import (
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    task_success,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
)
from prometheus_client import Counter, Gauge, Histogram, multiprocess, start_http_server

from core.observability import resource_metrics

logger = logging.getLogger(__name__)

TASKS = Counter(
    "celery_tasks_total",
    "Task runs by task name and outcome (succeeded, failed, retried).",
    ["task", "outcome"],
)
RUNTIME = Histogram(
    "celery_task_runtime_seconds",
    "Wall time of each task run, by task name.",
    ["task"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
# The broker's queue depth (core.messaging.broker) over this gives the backlog per worker,
# which workers scale on. Reported by the workers themselves, because Redis cannot tell who
# waits on a queue; each running worker counts 1 for each queue it reads.
CONSUMERS = Gauge(
    "celery_queue_consumers",
    "Workers consuming each Celery queue (1 per worker: sum over workers).",
    ["queue"],
    multiprocess_mode="livesum",
)

# Start times of the runs in progress in this process, by task id.
_started: dict[str, float] = {}
_server: tuple[WSGIServer, Thread] | None = None


def _multiproc_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@task_prerun.connect(dispatch_uid="core.observability.celery_metrics.started")
def _on_prerun(task_id: str | None = None, **kwargs: Any) -> None:
    if task_id is not None:
        _started[task_id] = time.monotonic()


@task_postrun.connect(dispatch_uid="core.observability.celery_metrics.finished")
def _on_postrun(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    started = _started.pop(task_id, None) if task_id is not None else None
    if started is not None and task is not None:
        RUNTIME.labels(task.name).observe(time.monotonic() - started)


@task_success.connect(dispatch_uid="core.observability.celery_metrics.succeeded")
def _on_success(sender: Any = None, **kwargs: Any) -> None:
    TASKS.labels(sender.name, "succeeded").inc()


@task_failure.connect(dispatch_uid="core.observability.celery_metrics.failed")
def _on_failure(sender: Any = None, **kwargs: Any) -> None:
    TASKS.labels(sender.name, "failed").inc()


@task_retry.connect(dispatch_uid="core.observability.celery_metrics.retried")
def _on_retry(sender: Any = None, **kwargs: Any) -> None:
    TASKS.labels(sender.name, "retried").inc()


@worker_init.connect(dispatch_uid="core.observability.celery_metrics.clean")
def _on_worker_init(**kwargs: Any) -> None:
    # Before the pool forks: figures of a previous run must not be added in.
    directory = _multiproc_dir()
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        for stale in Path(directory).glob("*.db"):
            stale.unlink()


@worker_ready.connect(dispatch_uid="core.observability.celery_metrics.serve")
def _on_worker_ready(sender: Any = None, **kwargs: Any) -> None:
    # The main process, which with the solo or threads pool also runs the tasks.
    if sender is not None:
        for queue in sender.app.amqp.queues.consume_from:
            CONSUMERS.labels(queue).set(1)
    resource_metrics.start_sampling(process="worker")
    start_metrics_server()


@worker_process_init.connect(dispatch_uid="core.observability.celery_metrics.child_started")
def _on_child_started(**kwargs: Any) -> None:
    resource_metrics.start_sampling(process="worker")


@worker_process_shutdown.connect(dispatch_uid="core.observability.celery_metrics.child_exit")
def _on_child_shutdown(pid: int | None = None, **kwargs: Any) -> None:
    if _multiproc_dir():
        multiprocess.mark_process_dead(pid or os.getpid())


def start_metrics_server() -> tuple[WSGIServer, Thread] | None:
    """Serve /metrics on CELERY_METRICS_ADDR:CELERY_METRICS_PORT, once a process; 0: never."""
    global _server
    from django.conf import settings

    # Imported here: this module loads with config.celery, before Django's apps are ready.
    from core.observability.metrics import scrape_registry

    if _server is not None or not settings.CELERY_METRICS_PORT:
        return _server
    _server = start_http_server(
        settings.CELERY_METRICS_PORT, addr=settings.CELERY_METRICS_ADDR, registry=scrape_registry()
    )
    logger.info(
        "celery metrics on %s:%s", settings.CELERY_METRICS_ADDR, settings.CELERY_METRICS_PORT
    )
    return _server


def stop_metrics_server() -> None:
    """Stop the metrics server of this process, if it runs (tests, shutdown)."""
    global _server
    if _server is not None:
        server, thread = _server
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        _server = None
