"""Celery tasks of the outbox and webhooks. Each loads its input and calls one service.

Messages carry ids only, never data: a task always acts on the committed rows, so a
redelivered or late message sees the current state.
"""

import logging
import time
from typing import Any
from uuid import UUID

from celery import Task, shared_task
from celery_batches import Batches, SimpleRequest
from django.conf import settings

from core.db import router as db_router
from events import metrics, registry, retention, services, webhooks
from events.backoff import backoff_seconds
from events.models import OutboxEvent

logger = logging.getLogger(__name__)

# A batch runs when this many messages are buffered, or this long after the first: under
# load, batches fill and their fixed costs are shared; when idle, an event waits at most
# the interval. The prefetch (CELERY_WORKER_PREFETCH_MULTIPLIER) must let a batch fill.
HANDLER_BATCH = {
    "flush_every": settings.EVENTS_BATCH_SIZE,
    "flush_interval": settings.EVENTS_BATCH_WAIT_SECONDS,
}


class HandlerBatches(Batches):
    """celery-batches' task class, with its flush timer started again after a reconnect.

    When the broker connection is lost, Celery clears the consumer's timer and, once
    connected again, builds each task's strategy anew. Batches keeps its handle on the
    cleared timer entry and never starts another, so a buffer short of `flush_every`
    would wait for more messages forever (celery-batches issues 99 and 107). Dropping the
    handle when the strategy is rebuilt lets the next message start a live timer.
    """

    # Set by Batches.__init__: the repeating flush's timer entry, None while none runs.
    _tref: Any

    def Strategy(self, task: Task, app: Any, consumer: Any) -> Any:
        """Forget the previous consumer's timer entry, then build the strategy as usual."""
        if self._tref is not None:
            self._tref.cancel()
            self._tref = None
        return super().Strategy(task, app, consumer)


@shared_task(base=HandlerBatches, name=services.HANDLE_EVENTS_TASK, **HANDLER_BATCH)
def handle_events(requests: list[SimpleRequest]) -> None:
    """Run the handlers of every event in a batch of messages, each naming some events.

    The relay sends one message for the events a web process committed together; the
    worker buffers messages (celery-batches) and runs their events in chunks of
    EVENTS_BATCH_SIZE, so the per-task and per-statement costs are shared.
    """
    event_ids = [event_id for request in requests for event_id in _event_ids(request.args[0])]
    # A message can name an event another message of the batch names too (a relay and a
    # sweeper that met); handling it once per batch is enough.
    unique = list(dict.fromkeys(event_ids))
    # One time budget for the whole task, however many chunks it holds.
    deadline = time.monotonic() + settings.CELERY_TASK_SOFT_TIME_LIMIT / 2
    size = settings.EVENTS_BATCH_SIZE
    for start in range(0, len(unique), size):
        if not _handle_chunk(unique[start : start + size], deadline=deadline):
            break


def _event_ids(argument: str | list[str]) -> list[UUID]:
    # A list from this release; one id from the release before, whose messages may still
    # be queued after an upgrade.
    if isinstance(argument, str):
        return [UUID(argument)]
    return [UUID(event_id) for event_id in argument]


def _handle_chunk(event_ids: list[UUID], *, deadline: float) -> bool:
    """Run one chunk's handlers; hand each event whose handlers failed to `handle_event`,
    which retries it alone with backoff. Return whether every retry was enqueued.

    The batch's messages are acknowledged when the task returns, whatever happened: an
    event whose retry could not be enqueued stays unhandled, and the outbox hands it over
    again (events.services.outbox_redispatch_unhandled).
    """
    try:
        with db_router.use_primary():
            failures = {
                (str(event.pk), event.topic): failed
                for event, failed in services.event_handle_batch(
                    event_ids=event_ids, deadline=deadline
                ).items()
            }
    except Exception as unhandled:
        # Before any handler ran (the database unreachable, say): all of them are owed.
        logger.warning("a batch of %d events failed: %s", len(event_ids), unhandled)
        failures = {
            (str(event_id), "unknown"): {registry.ALL_HANDLERS: unhandled} for event_id in event_ids
        }
    for (event_id, topic), failed in failures.items():
        if not _retry_alone(event_id, topic, failed):
            # The broker refused one: the rest would wait on it the same way. They stay
            # unhandled, and the outbox hands them over again.
            return False
    return True


def _retry_alone(event_id: str, topic: str, failures: dict[str, Exception]) -> bool:
    """Hand an event to `handle_event`'s retries; whether the broker took it."""
    for name in failures:
        metrics.RETRIED.labels(topic, name).inc()
    if handle_events.request.is_eager:
        # In-process (`make run`): an eager retry would run again at once, inside the
        # request; log it instead, the admin's "dispatch again" re-runs it.
        logger.error("handlers %s failed for event %s", ", ".join(failures), event_id)
        return True
    try:
        handle_event.apply_async(
            args=[event_id],
            countdown=_backoff(attempt=1),
            retries=1,
            retry=True,
            retry_policy=services.PUBLISH_RETRY,
        )
    except Exception:
        logger.warning("could not enqueue the retry of event %s", event_id, exc_info=True)
        return False
    return True


@shared_task(bind=True, name="events.tasks.handle_event", max_retries=None)
def handle_event(self: Task, event_id: str, handler_name: str | None = None) -> None:
    """Run one event's handlers; retry the failed ones with backoff.

    The retries of events a batch failed on come here. `handler_name` is accepted for
    messages an earlier release queued naming one handler; every handler of the event is
    run, and those that have handled it already do nothing.
    """
    topic, failed = "", {}
    try:
        # The event may be newer than anything a replica has replayed.
        with db_router.use_primary():
            failures = services.event_handle_batch(event_ids=[UUID(event_id)])
        # At most this one event: its topic (already read) labels the retry's metrics.
        for event, errors in failures.items():
            topic, failed = event.topic, errors
    except Exception as unhandled:
        topic = _topic(event_id)
        metrics.FAILED.labels(topic, registry.ALL_HANDLERS).inc()
        failed = {registry.ALL_HANDLERS: unhandled}
    if not failed:
        return
    names = ", ".join(sorted(failed))
    exc = next(iter(failed.values()))
    if self.request.is_eager:
        logger.error("handlers %s failed for event %s", names, event_id, exc_info=exc)
        return
    # Handlers waiting for a dependency to come back (DependencyDown) keep retrying at the
    # backoff's ceiling; any other failure gives up after the maximum retries.
    waiting = all(isinstance(failure, registry.DependencyDown) for failure in failed.values())
    if not waiting and self.request.retries >= settings.EVENTS_HANDLER_MAX_RETRIES:
        logger.error("handlers %s gave up on event %s", names, event_id, exc_info=exc)
        raise exc
    for name in failed:
        metrics.RETRIED.labels(topic, name).inc()
    raise self.retry(exc=exc, countdown=_backoff(attempt=self.request.retries + 1)) from exc


def _backoff(*, attempt: int) -> float:
    return backoff_seconds(
        attempt=attempt,
        base=settings.EVENTS_RETRY_BACKOFF_SECONDS,
        maximum=settings.EVENTS_RETRY_BACKOFF_MAX_SECONDS,
    )


@shared_task(name="events.tasks.sweep_outbox")
def sweep_outbox() -> int:
    """Beat task: publish events the fast path left behind, hand over again events whose
    message was lost, revive stalled deliveries."""
    published = services.outbox_sweep()
    if published:
        logger.info("outbox sweep published %d events", published)
    services.outbox_redispatch_unhandled()
    stalled = webhooks.webhook_sweep_stalled()
    if stalled:
        logger.warning("re-enqueued %d stalled webhook deliveries", stalled)
    return published


@shared_task(name="events.tasks.purge_expired")
def purge_expired() -> dict[str, int]:
    """Beat task: delete outbox events, handler records and attempts past their retention."""
    purged = retention.retention_purge()
    logger.info("retention purge: %s", purged)
    return purged


@shared_task(name=webhooks.DELIVER_WEBHOOKS_TASK)
def deliver_webhooks(delivery_ids: list[str]) -> None:
    """Make one attempt of each delivery (a subscription's share of a batch of events);
    hand each that failed to `deliver_webhook`, which retries it alone with backoff."""
    # Handed out again by the broker: the worker that had it (and its leases) is gone.
    redelivered = bool((deliver_webhooks.request.delivery_info or {}).get("redelivered"))
    with db_router.use_primary():
        retry_in = webhooks.webhook_attempt_batch(
            delivery_ids=[UUID(delivery_id) for delivery_id in delivery_ids],
            reclaim=redelivered,
        )
    for delivery_id, countdown in retry_in.items():
        if deliver_webhooks.request.is_eager:
            logger.warning("webhook delivery %s failed; not retried in-process", delivery_id)
            continue
        try:
            deliver_webhook.apply_async(
                args=[str(delivery_id)],
                countdown=countdown,
                retries=1,
                retry=True,
                retry_policy=services.PUBLISH_RETRY,
            )
        except Exception:
            # The deliveries are committed and due: webhook_sweep_stalled enqueues them
            # later. The rest would wait on the broker the same way.
            logger.warning("could not enqueue the retry of delivery %s", delivery_id)
            break


@shared_task(bind=True, name="events.tasks.deliver_webhook", max_retries=None)
def deliver_webhook(self: Task, delivery_id: str) -> None:
    """Make one attempt of a webhook delivery; schedule the next one if it failed."""
    with db_router.use_primary():
        retry_in = webhooks.webhook_attempt(delivery_id=UUID(delivery_id))
    if retry_in is None:
        return
    if self.request.is_eager:
        # In-process (`make run`): no inline retry loop inside the request; the delivery
        # waits as "retrying" for the admin's retry action.
        logger.warning("webhook delivery %s failed; not retried in-process", delivery_id)
        return
    raise self.retry(countdown=retry_in)


def _topic(event_id: str) -> str:
    # Only a metric label: a failure here (the database may be why the handler failed)
    # must not replace the handler's own error or stop the retry.
    try:
        topic = OutboxEvent.objects.filter(pk=event_id).values_list("topic", flat=True).first()
    except Exception:
        return "unknown"
    return topic or "unknown"
