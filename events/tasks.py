"""Celery tasks of the outbox and webhooks. Each loads its input and calls one service.

Messages carry ids only, never data: a task always acts on the committed rows, so a
redelivered or late message sees the current state.
"""

import logging
from uuid import UUID

from celery import Task, shared_task
from django.conf import settings

from core import db_router
from events import metrics, registry, retention, services, webhooks
from events.backoff import backoff_seconds
from events.models import OutboxEvent

logger = logging.getLogger(__name__)

# The handler label of a failure that came before any handler ran.
ALL_HANDLERS = "all"


@shared_task(bind=True, name="events.tasks.handle_event", max_retries=None)
def handle_event(self: Task, event_id: str, handler_name: str | None = None) -> None:
    """Run an event's handlers (or the one named); retry the failed ones with backoff.

    `handler_name` is for messages naming one handler: the admin's re-dispatch sends none,
    but a release may still find such messages queued by the previous one.
    """
    logger.info("handling event %s", event_id)
    try:
        # The event may be newer than anything a replica has replayed.
        with db_router.use_primary():
            if handler_name is None:
                failures = services.event_handle_all(event_id=UUID(event_id))
            else:
                failures = _handle_one(event_id, handler_name)
    except Exception as unhandled:
        # Before any handler ran (the database unreachable, say): all of them are owed.
        metrics.FAILED.labels(_topic(event_id), handler_name or ALL_HANDLERS).inc()
        failures = {handler_name or ALL_HANDLERS: unhandled}
    if not failures:
        return
    names = ", ".join(sorted(failures))
    exc = next(iter(failures.values()))
    if self.request.is_eager:
        # In-process (`make run`): an eager retry would run again at once, inside the
        # request; log it instead, the admin's "dispatch again" re-runs it.
        logger.error("handlers %s failed for event %s", names, event_id, exc_info=exc)
        return
    # Handlers waiting for a dependency to come back (DependencyDown) keep retrying at the
    # backoff's ceiling; any other failure gives up after the maximum retries.
    waiting = all(isinstance(failure, registry.DependencyDown) for failure in failures.values())
    if not waiting and self.request.retries >= settings.EVENTS_HANDLER_MAX_RETRIES:
        logger.error("handlers %s gave up on event %s", names, event_id, exc_info=exc)
        raise exc
    topic = _topic(event_id)
    for name in failures:
        metrics.RETRIED.labels(topic, name).inc()
    countdown = backoff_seconds(
        attempt=self.request.retries + 1,
        base=settings.EVENTS_RETRY_BACKOFF_SECONDS,
        maximum=settings.EVENTS_RETRY_BACKOFF_MAX_SECONDS,
    )
    raise self.retry(exc=exc, countdown=countdown) from exc


def _handle_one(event_id: str, handler_name: str) -> dict[str, Exception]:
    services.event_handle(event_id=UUID(event_id), handler_name=handler_name)
    return {}


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
