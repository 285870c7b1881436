"""events.tasks' retry policy for handlers, decided without a broker.

The worker-level behaviour (real retries, redelivery) is in test_tasks.py; here the tasks'
own decisions: a batch hands each failed event to handle_event, which gives up after
EVENTS_HANDLER_MAX_RETRIES, except while a dependency is down.
"""

from typing import Any
from uuid import UUID

import pytest
from celery.exceptions import Retry
from django.db import OperationalError

from events import services
from events.models import OutboxEvent
from events.registry import DependencyDown
from events.tasks import handle_event, handle_events
from events.tests.factories import OutboxEventFactory

pytestmark = pytest.mark.django_db


class Boom(Exception):
    pass


@pytest.fixture
def retried(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Countdowns of the retries the task asks for; no message is sent."""
    countdowns: list[float] = []

    def retry(exc: Exception, countdown: float, **_: Any) -> Retry:
        countdowns.append(countdown)
        return Retry(exc=exc, when=countdown)

    monkeypatch.setattr(handle_event, "retry", retry)
    return countdowns


def run_task(*args: str, retries: int = 0) -> None:
    """Run handle_event as a worker would, on its `retries`-th retry."""
    handle_event.push_request(id="t-1", retries=retries, is_eager=False, called_directly=False)
    try:
        handle_event.run(*args)
    finally:
        handle_event.pop_request()


EVENT_ID = "00000000-0000-0000-0000-000000000001"


def failed_event(event_id: str = EVENT_ID) -> OutboxEvent:
    return OutboxEventFactory.build(id=UUID(event_id))


def run_after(retries: int, failure: Exception, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(**_: Any) -> dict[OutboxEvent, dict[str, Exception]]:
        return {failed_event(): {"users.handlers.x": failure}}

    monkeypatch.setattr(services, "event_handle_batch", fail)
    run_task(EVENT_ID, retries=retries)


def test_an_ordinary_failure_gives_up_after_the_maximum(
    settings: Any, retried: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(Retry):
        run_after(settings.EVENTS_HANDLER_MAX_RETRIES - 1, Boom(), monkeypatch)
    with pytest.raises(Boom):
        run_after(settings.EVENTS_HANDLER_MAX_RETRIES, Boom(), monkeypatch)
    assert len(retried) == 1


def test_a_dependency_down_keeps_retrying_at_the_ceiling(
    settings: Any, retried: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(Retry):
        run_after(settings.EVENTS_HANDLER_MAX_RETRIES + 50, DependencyDown("redis"), monkeypatch)
    assert retried[0] <= settings.EVENTS_RETRY_BACKOFF_MAX_SECONDS
    assert retried[0] >= settings.EVENTS_RETRY_BACKOFF_MAX_SECONDS / 2


def test_an_event_that_cannot_be_read_is_retried_whole(
    settings: Any, retried: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database unreachable before any handler ran: the task retries, nothing is lost."""

    def unreachable(**_: Any) -> dict[str, Exception]:
        raise OperationalError("default is unreachable")

    monkeypatch.setattr(services, "event_handle_batch", unreachable)
    with pytest.raises(Retry):
        run_task("00000000-0000-0000-0000-000000000002")
    assert len(retried) == 1


def test_failed_handlers_of_a_whole_event_are_retried(
    settings: Any, retried: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    def one_failed(**_: Any) -> dict[OutboxEvent, dict[str, Exception]]:
        return {failed_event(): {"users.handlers.x": Boom()}}

    monkeypatch.setattr(services, "event_handle_batch", one_failed)
    with pytest.raises(Retry):
        run_task(EVENT_ID)
    assert len(retried) == 1


class FakeRequest:
    def __init__(self, event_id: str) -> None:
        self.args = [event_id]


@pytest.mark.parametrize("how", ["a handler failed", "the batch could not be read"])
def test_a_batch_hands_each_failed_event_to_its_own_retries(
    settings: Any, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    failed, fine = EVENT_ID, "00000000-0000-0000-0000-000000000002"

    def handle(**_: Any) -> dict[OutboxEvent, dict[str, Exception]]:
        if how == "the batch could not be read":
            raise OperationalError("default is unreachable")
        return {failed_event(failed): {"users.handlers.x": Boom()}}

    sent: list[tuple[list[str], dict[str, Any]]] = []
    monkeypatch.setattr(services, "event_handle_batch", handle)
    monkeypatch.setattr(handle_event, "apply_async", lambda args, **kw: sent.append((args, kw)))
    handle_events.push_request(is_eager=False)
    try:
        handle_events.run([FakeRequest(failed), FakeRequest(fine)])
    finally:
        handle_events.pop_request()

    expected = [failed] if how == "a handler failed" else [failed, fine]
    assert [args for args, _ in sent] == [[event_id] for event_id in expected]
    for _, options in sent:
        # The first of handle_event's retries, after the first backoff.
        assert options["retries"] == 1
        assert 0 < options["countdown"] <= settings.EVENTS_RETRY_BACKOFF_SECONDS


def test_a_batch_stops_handing_over_retries_when_the_broker_refuses_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each refusal can take the broker's connection timeout: the rest are not tried (they
    stay unhandled, and the outbox hands them over again)."""
    ids = [f"00000000-0000-0000-0000-00000000000{n}" for n in range(1, 4)]
    monkeypatch.setattr(
        services,
        "event_handle_batch",
        lambda **_: {failed_event(event_id): {"users.handlers.x": Boom()} for event_id in ids},
    )
    tried: list[list[str]] = []

    def broker_down(args: list[str], **_: Any) -> None:
        tried.append(args)
        raise ConnectionError("broker down")

    monkeypatch.setattr(handle_event, "apply_async", broker_down)
    handle_events.push_request(is_eager=False)
    try:
        handle_events.run([FakeRequest(event_id) for event_id in ids])
    finally:
        handle_events.pop_request()

    assert tried == [[ids[0]]]
