"""core.messaging.celery_routing: a read pin travels in task headers and applies in the worker.

These drive Celery's real signals without a broker, as a worker does around each task.
"""

import time

import pytest
from celery.signals import before_task_publish

from config.celery import app
from core.db import router as db_router
from core.messaging.celery_routing import PIN_HEADER
from core.tests.celery_worker import run_as_worker

seen: list[float] = []


@app.task(name="core.tests.celery_routing.note_pin")
def note_pin() -> None:
    """Record how long this task's reads stay pinned to the primary."""
    seen.append(db_router.pin_remaining())


@pytest.fixture(autouse=True)
def _fresh() -> None:
    seen.clear()
    db_router.reset()


def publish() -> dict:
    headers: dict = {}
    before_task_publish.send(sender=note_pin.name, body=(), headers=headers)
    return headers


def test_a_pinned_context_sends_its_pin_with_the_task() -> None:
    db_router.pin_reads_to_primary(10)
    headers = publish()
    assert 9 < headers[PIN_HEADER] - time.time() <= 10


def test_an_unpinned_context_sends_none() -> None:
    assert PIN_HEADER not in publish()


def test_the_worker_applies_the_pin_for_what_is_left_of_it() -> None:
    run_as_worker(note_pin, {PIN_HEADER: time.time() + 5})
    assert 4 < seen[0] <= 5
    assert db_router.pin_remaining() == 0, "the next task on this thread starts unpinned"


def test_a_pin_from_a_fast_clock_lasts_no_longer_than_a_pin(settings) -> None:
    run_as_worker(note_pin, {PIN_HEADER: time.time() + 3600})
    assert seen[0] <= settings.REPLICA_PIN_SECONDS


def test_an_expired_or_missing_pin_pins_nothing_even_after_a_pinned_task() -> None:
    db_router.pin_reads_to_primary(30)  # left over in the worker thread
    run_as_worker(note_pin, {PIN_HEADER: time.time() - 1})
    run_as_worker(note_pin, {})
    assert seen == [0.0, 0.0]
