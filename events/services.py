"""Writes of the outbox: publish in the caller's transaction, relay to the broker, handle.

Delivery is at-least-once. An event is written in the same transaction as the change it
describes, so it exists exactly when the change does. After commit the relay hands it to
the broker within EVENTS_RELAY_LINGER_SECONDS (the fast path: the process's relay thread,
events.relay, one message for the events of many requests); if the broker is unreachable
the rows simply stay unpublished and the periodic sweeper hands them over later. A relay
that crashed between enqueueing and marking the rows publishes them again: handlers
therefore record what they handled (event_handle_batch), which makes the redelivery a no-op.
"""

import logging
import time
from collections.abc import Sequence
from datetime import timedelta
from functools import partial
from typing import Any
from uuid import UUID

import structlog
from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.db.router import PRIMARY
from core.observability.request_logging import current_request_id
from events import metrics, registry
from events.models import HandledEvent, OutboxEvent
from events.relay import BatchingRelay

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

# The tasks this module hands work to, by their registered names: events.tasks calls this
# module, so it is named here rather than imported (events.apps imports the tasks, so every
# process has them registered).
HANDLE_EVENTS_TASK = "events.tasks.handle_events"

# A publish from the worker tries once more, at once, on a fresh connection: after the
# broker restarts, each process's pooled connection is the one the broker closed, and
# its first publish fails on it. A broker that is really down fails the second try as
# fast; what was not enqueued is then the sweepers' to hand over.
PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0, "interval_max": 0}


def event_publish(*, topic: str, aggregate_id: object, payload: dict[str, Any]) -> OutboxEvent:
    """Write an event to the outbox inside the caller's transaction; relay it on commit.

    Must be called inside `transaction.atomic()`: outside one, the change and its event
    would commit separately and a crash in between would lose the event.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("event_publish must run inside the transaction of the change.")
    registry.handler_names(topic)  # a typo in a topic fails here, not silently later
    event = OutboxEvent(
        topic=topic,
        schema_version=SCHEMA_VERSION,
        aggregate_id=str(aggregate_id),
        payload=payload,
        request_id=current_request_id(),
    )
    # Not the primary key's uniqueness (a query): it is a fresh UUID, and the insert
    # would fail on a clash anyway.
    event.full_clean(validate_unique=False)
    event.save(force_insert=True)
    transaction.on_commit(partial(_relay_after_commit, event))
    return event


def event_relay(*, events: Sequence[OutboxEvent]) -> bool:
    """Hand committed events to the broker now, as one message; return whether it took them.

    No row lock and no transaction: one UPDATE after the hand-over. The sweeper leaves
    events younger than EVENTS_SWEEP_AFTER_SECONDS to this path, so the two meet only if
    this one is that late, and a second hand-over is absorbed by the handlers' idempotency
    (`event_handle_batch`). Never raises: the changes are committed and the events are safe
    in the outbox, so a broker (or any other) failure here is logged, recorded on the rows
    and left to the sweeper.
    """
    event_ids = [event.pk for event in events]
    try:
        _enqueue_handlers(events)
        OutboxEvent.objects.mark_published(event_ids=event_ids, using=PRIMARY)
        return True
    except Exception as exc:
        logger.warning("outbox relay failed for %d events; the sweeper will retry", len(events))
        metrics.RELAY_FAILED.inc(len(events))
        try:
            OutboxEvent.objects.filter(pk__in=event_ids).update(
                attempts=F("attempts") + 1, last_error=_describe(exc)
            )
        except Exception:
            logger.exception("could not record the relay failure of events %s", event_ids)
        return False


# The process's relay: one thread, one message for the events its requests committed
# within the linger (settings read at each batch, so a test's apply). While the broker is
# down each batch waits out the connect timeout; twenty batches wait at most, and events
# beyond them are the sweeper's.
_RELAY: BatchingRelay[OutboxEvent] = BatchingRelay(
    name="outbox-relay",
    flush=lambda events: event_relay(events=events),
    linger=lambda: settings.EVENTS_RELAY_LINGER_SECONDS,
    max_size=lambda: settings.EVENTS_BATCH_SIZE,
    capacity=20 * settings.EVENTS_BATCH_SIZE,
)


def _relay_after_commit(event: OutboxEvent) -> None:
    # In-process tasks (`make run`) would run the handlers on the relay's thread, beside
    # the request's; and a linger of 0 asks for no batching: both relay here and now.
    if current_app.conf.task_always_eager or settings.EVENTS_RELAY_LINGER_SECONDS <= 0:
        event_relay(events=[event])
    elif not _RELAY.submit(event):
        metrics.RELAY_DEFERRED.inc()


def outbox_sweep(
    *,
    older_than: timedelta | None = None,
    batch_size: int | None = None,
    max_batches: int = 10,
) -> int:
    """Publish events left unpublished for longer than `older_than`; return how many.

    Several sweepers (and the fast path) may run at once: each claims its batch with
    SELECT ... FOR UPDATE SKIP LOCKED, so no event is handed over twice concurrently.
    The grace period leaves fresh events to the fast path. Stops at the first broker
    failure: the rest of the batch would fail the same way.
    """
    if older_than is None:
        older_than = timedelta(seconds=settings.EVENTS_SWEEP_AFTER_SECONDS)
    batch_size = batch_size or settings.EVENTS_SWEEP_BATCH_SIZE
    published = 0
    for _ in range(max_batches):
        with transaction.atomic():
            batch = list(
                OutboxEvent.objects.select_for_update(skip_locked=True)
                .filter(published_at__isnull=True, created_at__lte=timezone.now() - older_than)
                .order_by("created_at")[:batch_size]
            )
            for event in batch:
                try:
                    _enqueue_handlers([event])
                except LookupError as exc:
                    # No handler is registered for its topic (renamed or removed): the
                    # event stays unpublished for an operator, and does not hold up the
                    # events behind it.
                    logger.error("outbox sweep: event %s has no handlers: %s", event.pk, exc)
                    event.attempts += 1
                    event.last_error = f"no handlers for topic {event.topic!r}"
                    event.save(update_fields=["attempts", "last_error"])
                    continue
                except Exception as exc:
                    logger.warning("outbox sweep: broker unavailable (%s)", _describe(exc))
                    metrics.RELAY_FAILED.inc()
                    event.attempts += 1
                    event.last_error = _describe(exc)
                    event.save(update_fields=["attempts", "last_error"])
                    return published
                _mark_published(event)
                published += 1
        if len(batch) < batch_size:
            break
    return published


def outbox_redispatch_unhandled(*, batch_size: int | None = None) -> int:
    """Hand over again published events no handler run finished; return how many.

    A message can be lost after the broker took it: a worker killed between taking it
    off the queue and recording it as unacknowledged (seen with Redis under `make chaos`),
    or a broker that lost its data. Such an event is published but never handled, and
    the sweep above never looks at it again. Past EVENTS_REDISPATCH_AFTER_SECONDS (longer
    than a healthy event takes, retries included) it is handed over again, at most
    EVENTS_REDISPATCH_MAX times; the handlers' idempotency absorbs a copy that was only
    slow. An event whose handler keeps failing is left, after that, to the operators.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.EVENTS_REDISPATCH_AFTER_SECONDS)
    batch = list(
        OutboxEvent.objects.using(PRIMARY)
        .filter(
            published_at__isnull=False,
            handled_at__isnull=True,
            published_at__lte=cutoff,
            redispatches__lt=settings.EVENTS_REDISPATCH_MAX,
        )
        .order_by("published_at")[: batch_size or settings.EVENTS_SWEEP_BATCH_SIZE]
    )
    for event in batch:
        try:
            _enqueue_handlers([event])
        except Exception as exc:
            logger.warning("outbox redispatch: broker unavailable (%s)", _describe(exc))
            break
        logger.warning("event %s was never handled; handed over again", event.pk)
        # The next look waits a whole period again from now.
        OutboxEvent.objects.using(PRIMARY).filter(pk=event.pk).update(
            published_at=timezone.now(), redispatches=F("redispatches") + 1
        )
    return len(batch)


def event_redispatch(*, event: OutboxEvent) -> OutboxEvent:
    """Hand an event to its handlers again (admin action), e.g. after fixing a handler.

    Handlers that already handled it do nothing; the others run.
    """
    _enqueue_handlers([event])
    _mark_published(event)
    return event


def event_handle_batch(
    *, event_ids: Sequence[UUID], deadline: float | None = None
) -> dict[OutboxEvent, dict[str, Exception]]:
    """Run every handler of each event, each at most once; return the failures by event
    and handler.

    The events are read in one query. Each handler then gets all of its events in one
    transaction, with their HandledEvent rows inserted in one statement, so a batch costs
    a few statements however many events it holds. A handler that fails on the batch is
    run again one event at a time, so one bad event fails alone; one that fails never
    rolls back or blocks another handler, and a retry re-runs only what failed. Events
    all of whose handlers succeeded are marked handled in one UPDATE.

    One by one, events are run only until `deadline` (`time.monotonic()`; by default half
    the task's soft time limit from now) has passed (a handler whose every call waits for
    a timeout, an SMTP server that hangs): the rest fail unrun, to be retried alone,
    rather than the whole batch being killed mid-way.
    """
    if deadline is None:
        deadline = time.monotonic() + settings.CELERY_TASK_SOFT_TIME_LIMIT / 2
    events = list(OutboxEvent.objects.using(PRIMARY).filter(pk__in=event_ids))
    if len(events) < len(set(event_ids)):
        found = {event.pk for event in events}
        logger.warning("events %s not found; their handlers skipped", set(event_ids) - found)
    failures: dict[OutboxEvent, dict[str, Exception]] = {}
    for event in events:
        # Tagged with the request that wrote the event: a batch mixes many requests.
        with structlog.contextvars.bound_contextvars(request_id=event.request_id or None):
            logger.info("handling event %s", event.pk)
        if event.topic not in registry.topics():
            # Its topic was renamed or removed: it fails alone, left to the operators.
            failures[event] = {
                registry.ALL_HANDLERS: LookupError(f"no handlers for topic {event.topic!r}")
            }
    for name, group in _by_handler(events).items():
        for failed, exc in _handle_group(name, group, deadline=deadline).items():
            failures.setdefault(failed, {})[name] = exc
    done = [event.pk for event in events if event not in failures and event.handled_at is None]
    if done:
        OutboxEvent.objects.using(PRIMARY).filter(pk__in=done).update(handled_at=timezone.now())
    return failures


def _by_handler(events: Sequence[OutboxEvent]) -> dict[str, list[OutboxEvent]]:
    groups: dict[str, list[OutboxEvent]] = {}
    for event in events:
        if event.topic not in registry.topics():
            continue
        for name in registry.handler_names(event.topic):
            groups.setdefault(name, []).append(event)
    return groups


def _handle_group(
    name: str, events: list[OutboxEvent], *, deadline: float
) -> dict[OutboxEvent, Exception]:
    """Run handler `name` on `events`, whole or (after a failure, or for a handler with
    outside effects) one by one until `deadline`; return the events it failed on."""
    if not registry.registration(name).one_event_at_a_time and len(events) > 1:
        try:
            _handle_once(events=events, handler_name=name)
            return {}
        except Exception as exc:
            logger.warning("handler %s failed on a batch, retried one by one: %s", name, exc)
    failures: dict[OutboxEvent, Exception] = {}
    for event in events:
        if time.monotonic() >= deadline:
            failures[event] = TimeoutError("not run: its batch ran out of time")
            continue
        try:
            _handle_once(events=[event], handler_name=name)
        except Exception as exc:
            metrics.FAILED.labels(event.topic, name).inc()
            logger.warning("handler %s failed for event %s: %s", name, event.pk, _describe(exc))
            failures[event] = exc
    return failures


def _handle_once(*, events: list[OutboxEvent], handler_name: str) -> None:
    """Run a handler in a transaction that also records its events as handled; skip the
    events it has already handled.

    The HandledEvent rows are inserted first, in the same transaction as the handler's
    own writes. A concurrent duplicate blocks on the unique index until this transaction
    ends, then finds the rows; after a crash the transaction rolls back and a redelivery
    runs the handler afresh. Side effects outside the database (an email sent just before
    a crash) can still repeat: that window is as small as the commit.
    """
    handler = registry.registration(handler_name).handler
    with transaction.atomic(using=PRIMARY):
        fresh = HandledEvent.objects.record(
            event_ids=[event.pk for event in events], handler=handler_name, using=PRIMARY
        )
        for event in events:
            if event.pk not in fresh:
                metrics.SKIPPED.labels(event.topic, handler_name).inc()
                logger.info("event %s already handled by %s", event.pk, handler_name)
        todo = [event for event in events if event.pk in fresh]
        if todo:
            handler(todo)
    for event in todo:
        metrics.HANDLED.labels(event.topic, handler_name).inc()


def _enqueue_handlers(events: Sequence[OutboxEvent]) -> None:
    for event in events:
        registry.handler_names(event.topic)  # no handler for the topic: refuse, not publish
    event_ids = [str(event.pk) for event in events]
    current_app.tasks[HANDLE_EVENTS_TASK].apply_async(
        args=[event_ids],
        # Given, so that Celery does not build them with its safe repr on every publish.
        argsrepr=repr([event_ids]),
        kwargsrepr="{}",
        # One request's events carry its id; a batch's events each carry their own in the
        # outbox, and the worker logs each with it.
        headers={"request_id": events[0].request_id} if len(events) == 1 else {},
        # No publish retries: a broker that is down now is the sweeper's business, and
        # retrying would hold the HTTP request (or the relay) that committed the events.
        retry=False,
    )


def _mark_published(event: OutboxEvent) -> None:
    event.published_at = timezone.now()
    event.attempts += 1
    event.last_error = ""
    event.save(update_fields=["published_at", "attempts", "last_error"])


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]
