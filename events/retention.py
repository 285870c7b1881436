"""Retention: the outbox, handler records and webhook attempts are not kept forever.

Outbox payloads hold email addresses, and all three tables grow with every change. A
beat job (events.tasks.purge_expired) deletes, oldest first:

- published outbox events older than OUTBOX_RETENTION_DAYS, unless a webhook delivery of
  theirs is still owed (pending or retrying); their deliveries and attempts go with them;
- handled-event records older than HANDLED_EVENT_RETENTION_DAYS (far longer than any
  redelivery can come late, which is what they guard against);
- attempts of finished (delivered or dead) deliveries older than
  WEBHOOK_ATTEMPT_RETENTION_DAYS.

Never an unpublished event, nor anything of a delivery still owed. Each batch of at most
RETENTION_BATCH_SIZE rows is its own short transaction, found through an index on its
age, so no batch locks many rows or holds its locks long.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, Model, OuterRef, QuerySet
from django.utils import timezone

from core.db.router import PRIMARY
from events.models import HandledEvent, OutboxEvent, WebhookAttempt, WebhookDelivery

OWED = (WebhookDelivery.Status.PENDING, WebhookDelivery.Status.RETRYING)
FINISHED = (WebhookDelivery.Status.DELIVERED, WebhookDelivery.Status.DEAD)


def retention_purge(*, now: datetime | None = None, max_batches: int = 100) -> dict[str, int]:
    """Delete what is past its retention; return how many rows of each kind went."""
    now = now or timezone.now()
    days = timedelta(days=1)
    owed = WebhookDelivery.objects.filter(event=OuterRef("pk"), status__in=OWED)
    events = OutboxEvent.objects.filter(
        published_at__isnull=False,
        created_at__lt=now - settings.OUTBOX_RETENTION_DAYS * days,
    ).exclude(Exists(owed))
    handled = HandledEvent.objects.filter(
        handled_at__lt=now - settings.HANDLED_EVENT_RETENTION_DAYS * days
    )
    attempts = WebhookAttempt.objects.filter(
        attempted_at__lt=now - settings.WEBHOOK_ATTEMPT_RETENTION_DAYS * days,
        delivery__status__in=FINISHED,
    )
    return {
        "outbox_events": _delete_in_batches(events, "created_at", max_batches),
        "handled_events": _delete_in_batches(handled, "handled_at", max_batches),
        "webhook_attempts": _delete_in_batches(attempts, "attempted_at", max_batches),
    }


def _delete_in_batches(rows: QuerySet[Model], age_field: str, max_batches: int) -> int:
    deleted = 0
    size = settings.RETENTION_BATCH_SIZE
    for _ in range(max_batches):
        with transaction.atomic(using=PRIMARY):
            batch = list(
                rows.using(PRIMARY)
                .order_by(age_field)
                .select_for_update(skip_locked=True, of=("self",))
                .values_list("pk", flat=True)[:size]
            )
            if batch:
                rows.model._default_manager.using(PRIMARY).filter(pk__in=batch).delete()
        deleted += len(batch)
        if len(batch) < size:
            break
    return deleted
