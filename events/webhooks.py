"""Writes of webhooks: subscriptions, the fan-out handler and delivery attempts.

A delivery is tried by events.tasks.deliver_webhook; each try is one `webhook_attempt`:
claim the delivery (one UPDATE that sets a lease, `claimed_until`), make the request with
no transaction open and no row locked, then record the outcome in one short transaction.
A redelivered copy of the same task finds the claim and does nothing; a worker that dies
mid-request leaves a lease that expires after CELERY_TASK_TIME_LIMIT (no task outlives
it), and the stalled-delivery sweeper enqueues the delivery again. The body is the
event's id, topic, time and payload; receivers deduplicate on the event id
(`X-Webhook-Id`), since a worker killed after the receiver answered but before the
outcome committed will send again (at-least-once).
"""

import json
import logging
import secrets
import time
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

import urllib3
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from events import breaker, metrics, registry, signing, ssrf, webhook_http
from events.backoff import backoff_seconds
from events.models import OutboxEvent, WebhookAttempt, WebhookDelivery, WebhookSubscription

logger = logging.getLogger(__name__)

SUBSCRIPTION_FIELDS = frozenset({"url", "topics", "secret", "is_active"})
# A duplicate copy of a retry that arrives this much before its time is ignored.
_EARLY_TOLERANCE = timedelta(seconds=0.5)


def webhook_subscription_create(
    *, url: str, topics: list[str], secret: str = "", is_active: bool = True
) -> WebhookSubscription:
    """Create a subscription; without `secret`, generate one (the caller shows it once)."""
    subscription = WebhookSubscription(
        url=url,
        topics=topics,
        secret=secret or secrets.token_urlsafe(32),
        is_active=is_active,
    )
    _validate(subscription)
    subscription.save(force_insert=True)
    return subscription


def webhook_subscription_update(
    *, subscription: WebhookSubscription, data: dict[str, Any]
) -> WebhookSubscription:
    """Change the given fields of a subscription (`url`, `topics`, `secret`, `is_active`)."""
    unknown = set(data) - SUBSCRIPTION_FIELDS
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be changed."))
    changed = [field for field, value in data.items() if getattr(subscription, field) != value]
    if not changed:
        return subscription
    for field in changed:
        setattr(subscription, field, data[field])
    _validate(subscription)
    subscription.save(update_fields=changed)
    return subscription


def webhook_subscription_delete(*, subscription: WebhookSubscription) -> None:
    """Delete a subscription and its delivery history."""
    subscription.delete()


def webhook_fan_out(event: OutboxEvent) -> None:
    """Event handler: one delivery per active subscription to the event's topic.

    Idempotent, and one INSERT for all subscriptions however many there are. Runs inside
    the transaction that records the event as handled; the deliveries are enqueued after
    it commits.
    """
    now = timezone.now()
    existing = set(
        WebhookDelivery.objects.filter(event=event).values_list("subscription_id", flat=True)
    )
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(subscription=subscription, event=event, next_attempt_at=now)
        for subscription in WebhookSubscription.objects.filter(is_active=True)
        # Topics are a short JSON list; filtering here works on SQLite and PostgreSQL.
        if event.topic in subscription.topics and subscription.pk not in existing
    )
    for delivery in deliveries:
        transaction.on_commit(partial(_enqueue_delivery, delivery_id=delivery.pk))


def webhook_delivery_retry(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Start a dead (or failing) delivery afresh: the admin's retry action.

    The operator says the endpoint is back, so the subscription's breaker is closed too.
    Earlier attempts stay in the history; the attempt count restarts.
    """
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        if delivery.status == WebhookDelivery.Status.DELIVERED:
            return delivery
        delivery.status = WebhookDelivery.Status.PENDING
        delivery.attempts = 0
        delivery.next_attempt_at = timezone.now()
        delivery.save(update_fields=["status", "attempts", "next_attempt_at"])
        breaker.breaker_reset(subscription=delivery.subscription)
        transaction.on_commit(partial(_enqueue_delivery, delivery_id=delivery.pk))
    return delivery


def webhook_attempt(*, delivery_id: UUID) -> float | None:
    """Try one delivery once. Return seconds until the next try, or None when done.

    Done means delivered, dead-lettered, or nothing to do (already delivered, unknown
    id, claimed by another attempt right now, or a duplicate message that came before
    its time).
    """
    claim = _claim(delivery_id)
    if claim is None:
        return None
    delivery, claimed_until = claim
    subscription = delivery.subscription
    if not subscription.is_active:
        outcome = _Outcome(error="The subscription is inactive.")
    elif not breaker.breaker_allows(subscription=subscription):
        outcome = _Outcome(error="Circuit breaker open: the endpoint keeps failing.")
        metrics.WEBHOOK_OUTCOMES.labels("breaker_open").inc()
    else:
        outcome = _post(subscription=subscription, event=delivery.event)
        breaker.breaker_record(subscription=subscription, success=outcome.ok)
    return _settle(
        delivery=delivery, outcome=outcome, number=delivery.attempts + 1, claim=claimed_until
    )


def _claim(delivery_id: UUID) -> tuple[WebhookDelivery, datetime] | None:
    """Lease a due, unclaimed delivery to this attempt; it and the lease's end, or None."""
    now = timezone.now()
    claimed_until = now + timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
    claimed = (
        WebhookDelivery.objects.filter(
            pk=delivery_id,
            status__in=(WebhookDelivery.Status.PENDING, WebhookDelivery.Status.RETRYING),
        )
        # A redelivered copy of a scheduled retry arrives early; the scheduled one will come.
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now + _EARLY_TOLERANCE))
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=claimed_until)
    )
    if not claimed:
        return None
    delivery = WebhookDelivery.objects.select_related("subscription", "event").get(pk=delivery_id)
    return delivery, claimed_until


def webhook_sweep_stalled() -> int:
    """Enqueue again the deliveries whose message seems lost; return how many.

    A delivery is due at `next_attempt_at`; one still waiting WEBHOOK_STALLED_AFTER_SECONDS
    after that lost its message (the broker died between the fan-out's commit and the enqueue,
    or lost its data). A copy of a message that was not lost is harmless: the attempt
    waits for the row lock, then finds the delivery done or not yet due.
    """
    stalled_before = timezone.now() - timedelta(seconds=settings.WEBHOOK_STALLED_AFTER_SECONDS)
    with transaction.atomic():
        stalled = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(
                status__in=(WebhookDelivery.Status.PENDING, WebhookDelivery.Status.RETRYING),
                next_attempt_at__lt=stalled_before,
            )
            .order_by("next_attempt_at")[: settings.EVENTS_SWEEP_BATCH_SIZE]
        )
        for delivery in stalled:
            delivery.next_attempt_at = timezone.now()
            delivery.save(update_fields=["next_attempt_at"])
            transaction.on_commit(partial(_enqueue_delivery, delivery_id=delivery.pk))
    return len(stalled)


def webhook_body(*, event: OutboxEvent) -> bytes:
    """The JSON body posted for an event."""
    document = {
        "id": str(event.pk),
        "topic": event.topic,
        "schema_version": event.schema_version,
        "created_at": event.created_at,
        "payload": event.payload,
    }
    return json.dumps(document, cls=DjangoJSONEncoder, separators=(",", ":")).encode()


class _Outcome:
    def __init__(
        self, *, ok: bool = False, status_code: int | None = None, error: str = "", ms: int = 0
    ) -> None:
        self.ok = ok
        self.status_code = status_code
        self.error = error
        self.duration_ms = ms


def _settle(
    *, delivery: WebhookDelivery, outcome: _Outcome, number: int, claim: datetime
) -> float | None:
    """Record attempt `number`, the delivery's next state and release the claim.

    Returns the backoff before the next attempt, if any. If the claim was lost (this
    attempt outlived its lease and another took the delivery over), the attempt is still
    recorded but the delivery is left to the attempt that holds it now.
    """
    retry_in: float | None = None
    changes: dict[str, Any] = {"attempts": number, "last_error": outcome.error}
    if outcome.ok:
        changes.update(
            status=WebhookDelivery.Status.DELIVERED,
            delivered_at=timezone.now(),
            next_attempt_at=None,
        )
    elif number >= settings.WEBHOOK_MAX_ATTEMPTS or not delivery.subscription.is_active:
        changes.update(status=WebhookDelivery.Status.DEAD, next_attempt_at=None)
        metrics.WEBHOOK_OUTCOMES.labels("dead").inc()
        logger.warning("webhook delivery %s dead-lettered: %s", delivery.pk, outcome.error)
    else:
        retry_in = backoff_seconds(
            attempt=number,
            base=settings.WEBHOOK_RETRY_BACKOFF_SECONDS,
            maximum=settings.EVENTS_RETRY_BACKOFF_MAX_SECONDS,
        )
        changes.update(
            status=WebhookDelivery.Status.RETRYING,
            next_attempt_at=timezone.now() + timedelta(seconds=retry_in),
        )
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=number,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
            retry_in_ms=None if retry_in is None else int(retry_in * 1000),
        )
        held = WebhookDelivery.objects.filter(pk=delivery.pk, claimed_until=claim).update(
            claimed_until=None, **changes
        )
    if not held:
        logger.warning("webhook delivery %s: claim lost; the outcome is not applied", delivery.pk)
        return None
    return retry_in


def _post(*, subscription: WebhookSubscription, event: OutboxEvent) -> _Outcome:
    try:
        target = ssrf.vetted_target(subscription.url)
    except ssrf.UnsafeTarget as exc:
        return _Outcome(error=str(exc))
    body = webhook_body(event=event)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "userservice-webhooks/1",
        "X-Webhook-Id": str(event.pk),
        "X-Webhook-Topic": event.topic,
        signing.SIGNATURE_HEADER: signing.sign(
            secret=subscription.secret, timestamp=int(time.time()), body=body
        ),
    }
    started = time.perf_counter()
    try:
        response = webhook_http.post(
            target=target, body=body, headers=headers, timeout=settings.WEBHOOK_TIMEOUT_SECONDS
        )
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        elapsed = time.perf_counter() - started
        metrics.WEBHOOK_LATENCY.labels("error").observe(elapsed)
        metrics.WEBHOOK_OUTCOMES.labels("failed").inc()
        return _Outcome(error=f"{type(exc).__name__}: {exc}"[:2000], ms=int(elapsed * 1000))
    elapsed = time.perf_counter() - started
    ok = 200 <= response.status < 300
    metrics.WEBHOOK_LATENCY.labels("ok" if ok else "http_error").observe(elapsed)
    metrics.WEBHOOK_OUTCOMES.labels("delivered" if ok else "failed").inc()
    return _Outcome(
        ok=ok,
        status_code=response.status,
        error="" if ok else f"HTTP {response.status}",
        ms=int(elapsed * 1000),
    )


def _validate(subscription: WebhookSubscription) -> None:
    errors: dict[str, list[str]] = {}
    unknown = [topic for topic in subscription.topics if topic not in registry.TOPICS]
    if not subscription.topics or unknown:
        errors["topics"] = [f"Choose one or more of: {', '.join(registry.TOPICS)}."]
    try:
        ssrf.check_target(subscription.url)
    except ssrf.UnsafeTarget as exc:
        errors["url"] = [str(exc)]
    try:
        subscription.full_clean()
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            errors.setdefault(field, []).extend(messages)
    if errors:
        raise ValidationError(errors)


def _enqueue_delivery(*, delivery_id: UUID) -> None:
    from events.tasks import deliver_webhook

    try:
        deliver_webhook.apply_async(
            args=[str(delivery_id)],
            retry=False,
        )
    except Exception:
        # The delivery row is committed and due: webhook_sweep_stalled enqueues it later.
        logger.warning("could not enqueue webhook delivery %s", delivery_id, exc_info=True)
