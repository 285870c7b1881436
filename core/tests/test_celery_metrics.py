"""core.observability.celery_metrics: task outcomes and runtimes, and the worker's own metrics port.

Tasks run eagerly through Celery's real tracer, which sends the same signals a worker does.
"""

import socket
import urllib.request

import pytest
from prometheus_client import REGISTRY

from config.celery import app
from core.observability import celery_metrics


@app.task(name="core.tests.celery_metrics.succeeds")
def succeeds() -> int:
    """Always works."""
    return 1


@app.task(name="core.tests.celery_metrics.fails")
def fails() -> None:
    """Always raises."""
    raise RuntimeError("broken on purpose")


@app.task(bind=True, name="core.tests.celery_metrics.retries_once", max_retries=1)
def retries_once(self) -> str:
    """Asks for a retry on its first run, then works."""
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return "second time lucky"


def _count(task: str, outcome: str) -> float:
    labels = {"task": task, "outcome": outcome}
    return REGISTRY.get_sample_value("celery_tasks_total", labels) or 0.0


def _runs_timed(task: str) -> float:
    return REGISTRY.get_sample_value("celery_task_runtime_seconds_count", {"task": task}) or 0.0


def test_a_success_is_counted_and_timed() -> None:
    before, timed = _count(succeeds.name, "succeeded"), _runs_timed(succeeds.name)
    succeeds.apply()
    assert _count(succeeds.name, "succeeded") == before + 1
    assert _runs_timed(succeeds.name) == timed + 1


def test_a_failure_is_counted_and_timed() -> None:
    before, timed = _count(fails.name, "failed"), _runs_timed(fails.name)
    result = fails.apply(throw=False)
    assert isinstance(result.result, RuntimeError)
    assert _count(fails.name, "failed") == before + 1
    assert _count(fails.name, "succeeded") == 0
    assert _runs_timed(fails.name) == timed + 1


def test_a_retry_is_counted() -> None:
    retried = _count(retries_once.name, "retried")
    succeeded = _count(retries_once.name, "succeeded")
    retries_once.apply(throw=False)
    assert _count(retries_once.name, "retried") == retried + 1
    assert _count(retries_once.name, "succeeded") == succeeded + 1


@pytest.fixture
def metrics_port(settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.CELERY_METRICS_PORT = port
    settings.CELERY_METRICS_ADDR = "127.0.0.1"
    yield port
    celery_metrics.stop_metrics_server()


def test_worker_ready_serves_the_metrics_on_their_own_port(metrics_port) -> None:
    from celery.signals import worker_ready

    succeeds.apply()
    worker_ready.send(sender=None)
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read().decode()
    assert f'celery_tasks_total{{outcome="succeeded",task="{succeeds.name}"}}' in body
    assert "celery_task_runtime_seconds_bucket" in body


def test_port_zero_serves_nothing(settings) -> None:
    settings.CELERY_METRICS_PORT = 0
    assert celery_metrics.start_metrics_server() is None


def test_a_ready_worker_counts_as_a_consumer_of_each_queue_it_reads(metrics_port) -> None:
    from types import SimpleNamespace

    from celery.signals import worker_ready

    class Consumer:
        """What the signal's sender offers: the worker's app, reading two of the queues."""

        app = SimpleNamespace(
            amqp=SimpleNamespace(
                queues=SimpleNamespace(consume_from=dict.fromkeys(["events", "webhooks"]))
            )
        )

    worker_ready.send(sender=Consumer())
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read().decode()
    assert 'celery_queue_consumers{queue="events"} 1.0' in body
    assert 'celery_queue_consumers{queue="webhooks"} 1.0' in body
    assert 'celery_queue_consumers{queue="housekeeping"}' not in body
