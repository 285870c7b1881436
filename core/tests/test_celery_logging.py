"""core.observability.celery_logging: the request id travels in task headers and tags the
task's logs.

These drive Celery's real signals without a broker; the end-to-end test with a real
worker comes with the events work.
"""

import logging

import pytest
import structlog
from celery.signals import before_task_publish

from config.celery import app
from core.tests.celery_worker import run_as_worker


@app.task(name="core.tests.celery_logging.log_something")
def log_something() -> str:
    """A task that logs through the stdlib, as tasks and libraries do."""
    logging.getLogger("tasks").info("task working")
    return "done"


@pytest.fixture(autouse=True)
def _clean_context():
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()


def test_publishing_copies_the_bound_request_id_into_the_headers() -> None:
    structlog.contextvars.bind_contextvars(request_id="req-77")
    headers: dict = {}
    before_task_publish.send(sender=log_something.name, body=(), headers=headers)
    assert headers["request_id"] == "req-77"


def test_publishing_outside_a_request_adds_nothing() -> None:
    headers: dict = {}
    before_task_publish.send(sender=log_something.name, body=(), headers=headers)
    assert "request_id" not in headers


def test_the_worker_binds_the_messages_request_id_for_the_task(log_output) -> None:
    structlog.contextvars.bind_contextvars(request_id="left-over-from-elsewhere")
    run_as_worker(log_something, {"request_id": "req-77"})
    (line,) = [line for line in log_output.lines() if line["event"] == "task working"]
    assert line["request_id"] == "req-77"
    assert line["task"] == "core.tests.celery_logging.log_something"
    assert line["task_id"] == "task-1"
    # Cleared afterwards: the next task does not inherit this one's context.
    assert structlog.contextvars.get_contextvars() == {}


def test_a_task_queued_outside_a_request_gets_its_own_id(log_output) -> None:
    run_as_worker(log_something, {})
    (line,) = [line for line in log_output.lines() if line["event"] == "task working"]
    assert len(line["request_id"]) == 32


def test_an_eager_task_logs_in_the_callers_context(log_output) -> None:
    structlog.contextvars.bind_contextvars(request_id="req-eager")
    assert log_something.apply().get() == "done"
    (line,) = [line for line in log_output.lines() if line["event"] == "task working"]
    assert line["request_id"] == "req-eager"
    assert structlog.contextvars.get_contextvars() == {"request_id": "req-eager"}


def test_the_worker_keeps_the_django_log_configuration() -> None:
    import logging as stdlib_logging

    from celery.signals import setup_logging
    from django.conf import settings

    # With a receiver connected, Celery's worker configures no logging of its own.
    responses = setup_logging.send(
        sender=None, loglevel="WARNING", logfile=None, format="", colorize=False
    )
    assert responses
    root = stdlib_logging.getLogger()
    # Its level is LOG_LEVEL's, not the WARNING passed as Celery's command-line level.
    assert stdlib_logging.getLevelName(root.level) == settings.LOGGING["root"]["level"]
    assert [type(handler.formatter) for handler in root.handlers if handler.formatter] == [
        structlog.stdlib.ProcessorFormatter
    ]
