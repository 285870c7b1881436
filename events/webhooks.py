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
import uuid
from collections.abc import Sequence
from datetime import timedelta
from functools import partial
from typing import Any
from uuid import UUID

import urllib3
from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from events import breaker, metrics, registry, signing, ssrf, webhook_http
from events.backoff import backoff_seconds
from events.models import OutboxEvent, WebhookAttempt, WebhookDelivery, WebhookSubscription
from events.services import PUBLISH_RETRY

logger = logging.getLogger(__name__)

SUBSCRIPTION_FIELDS = frozenset({"url", "topics", "secret", "is_active"})
# A duplicate copy of a retry that arrives this much before its time is ignored.
_EARLY_TOLERANCE = timedelta(seconds=0.5)


class _Outcome:
    def __init__(
        self, *, ok: bool = False, status_code: int | None = None, error: str = "", ms: int = 0
    ) -> None:
        self.ok = ok
        self.status_code = status_code
        self.error = error
        self.duration_ms = ms


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


# Recorded with every event handled: never change it.
FAN_OUT = "events.webhooks.webhook_fan_out"

# The task this module hands deliveries to, by its registered name: events.tasks calls
# this module, so it is named here rather than imported.
DELIVER_WEBHOOKS_TASK = "events.tasks.deliver_webhooks"


@registry.handles(registry.EVERY_TOPIC, name=FAN_OUT)
def webhook_fan_out(events: Sequence[OutboxEvent]) -> None:
    """Event handler: one delivery per event and active subscription to its topic.

    Idempotent, and three statements for a whole batch of events however many
    subscriptions there are. Runs inside the transaction that records the events as
    handled; after it commits, each subscription's new deliveries are enqueued together,
    in messages of at most EVENTS_BATCH_SIZE.
    """
    now = timezone.now()
    existing = set(
        WebhookDelivery.objects.filter(event__in=events).values_list("event_id", "subscription_id")
    )
    subscriptions = list(WebhookSubscription.objects.filter(is_active=True))
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(subscription=subscription, event=event, next_attempt_at=now)
        for event in events
        for subscription in subscriptions
        # Topics are a short JSON list; filtering here works on SQLite and PostgreSQL.
        if event.topic in subscription.topics and (event.pk, subscription.pk) not in existing
    )
    by_subscription: dict[UUID, list[UUID]] = {}
    for delivery in deliveries:
        by_subscription.setdefault(delivery.subscription_id, []).append(delivery.pk)
    size = settings.EVENTS_BATCH_SIZE
    for ids in by_subscription.values():
        for first in range(0, len(ids), size):
            transaction.on_commit(
                partial(_enqueue_deliveries, delivery_ids=ids[first : first + size])
            )


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
        transaction.on_commit(partial(_enqueue_deliveries, delivery_ids=[delivery.pk]))
    return delivery


def webhook_attempt(*, delivery_id: UUID) -> float | None:
    """Try one delivery once. Return seconds until the next try, or None when done.

    Done means delivered, dead-lettered, or nothing to do (already delivered, unknown
    id, claimed by another attempt right now, or a duplicate message that came before
    its time).
    """
    return webhook_attempt_batch(delivery_ids=[delivery_id]).get(delivery_id)


def webhook_attempt_batch(
    *, delivery_ids: Sequence[UUID], reclaim: bool = False
) -> dict[UUID, float]:
    """Try each of the deliveries once; return the seconds until the next try of those
    that failed and will be tried again.

    One UPDATE claims every due, unclaimed delivery of the list for this call (the
    others are skipped: done, not yet due, or held by another attempt), one query reads
    them, the requests go out one after another over the kept-alive pools with no
    transaction open, and one short transaction records every outcome. Requests stop
    before the lease could run out (a slow endpoint, a long batch): what is left is
    released untried, to be enqueued again by the caller.

    `reclaim`: the message is one the broker handed out again because the worker that had
    it is gone (RabbitMQ requeues a lost consumer's messages at once), so the leases it
    held are taken over rather than waited out. Should that worker still be running (a
    cut connection), a delivery may be posted twice; receivers dedupe on its id.
    """
    token = uuid.uuid4()
    started = time.monotonic()
    lease = settings.CELERY_TASK_TIME_LIMIT
    if not _claim(delivery_ids, token=token, lease=lease, reclaim=reclaim):
        return {}
    claimed = list(
        WebhookDelivery.objects.filter(claim_token=token)
        .select_related("subscription", "event")
        .order_by("created_at", "id")
    )
    # One object per subscription, so that its breaker's state carries across the batch.
    subscriptions: dict[UUID, WebhookSubscription] = {}
    for delivery in claimed:
        delivery.subscription = subscriptions.setdefault(
            delivery.subscription_id, delivery.subscription
        )
    # A request may last WEBHOOK_TIMEOUT_SECONDS; none starts that close to the soft limit.
    stop_at = started + settings.CELERY_TASK_SOFT_TIME_LIMIT - settings.WEBHOOK_TIMEOUT_SECONDS
    outcomes: list[tuple[WebhookDelivery, _Outcome]] = []
    untried: list[WebhookDelivery] = []
    # Each endpoint's name is resolved and vetted once a batch; its requests connect to
    # the vetted address.
    targets: dict[str, ssrf.Target | ssrf.UnsafeTarget] = {}
    for delivery in claimed:
        if time.monotonic() >= stop_at:
            untried.append(delivery)
        else:
            outcomes.append((delivery, _attempt(delivery, targets)))
    return _settle(outcomes=outcomes, untried=untried, token=token)


def _attempt(
    delivery: WebhookDelivery, targets: dict[str, ssrf.Target | ssrf.UnsafeTarget]
) -> _Outcome:
    """One request for a claimed delivery, unless the subscription or its breaker forbid it.

    The deliveries of one batch share their subscription's object, so a failure recorded
    here is seen by the next delivery to the same endpoint: the breaker opens mid-batch.
    """
    subscription = delivery.subscription
    if not subscription.is_active:
        return _Outcome(error="The subscription is inactive.")
    if not breaker.breaker_allows(subscription=subscription):
        metrics.WEBHOOK_OUTCOMES.labels("breaker_open").inc()
        return _Outcome(error="Circuit breaker open: the endpoint keeps failing.")
    url = subscription.url
    if url not in targets:
        try:
            targets[url] = ssrf.vetted_target(url)
        except ssrf.UnsafeTarget as exc:
            targets[url] = exc
    target = targets[url]
    if isinstance(target, ssrf.UnsafeTarget):
        return _Outcome(error=str(target))
    outcome = _post(subscription=subscription, event=delivery.event, target=target)
    breaker.breaker_record(subscription=subscription, success=outcome.ok)
    return outcome


def _claim(delivery_ids: Sequence[UUID], *, token: uuid.UUID, lease: float, reclaim: bool) -> int:
    """Lease the due, unclaimed (or, with `reclaim`, any) deliveries among `delivery_ids`
    to `token`; how many."""
    now = timezone.now()
    due = (
        WebhookDelivery.objects.filter(
            pk__in=delivery_ids,
            status__in=(WebhookDelivery.Status.PENDING, WebhookDelivery.Status.RETRYING),
        )
        # A redelivered copy of a scheduled retry arrives early; the scheduled one will come.
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now + _EARLY_TOLERANCE))
    )
    if not reclaim:
        due = due.filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
    return due.update(claimed_until=now + timedelta(seconds=lease), claim_token=token)


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
        if stalled:
            ids = [delivery.pk for delivery in stalled]
            transaction.on_commit(partial(_enqueue_deliveries, delivery_ids=ids))
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


def _settle(
    *,
    outcomes: list[tuple[WebhookDelivery, _Outcome]],
    untried: list[WebhookDelivery],
    token: uuid.UUID,
) -> dict[UUID, float]:
    """Record each attempt and its delivery's next state, and release the claims.

    One transaction: the attempts in one INSERT, the delivered in one UPDATE, each
    failure in its own (its backoff is its own). Only rows still claimed by `token` are
    changed: if an attempt outlived its lease and another took the delivery over, its
    attempt is recorded but the delivery is left to the attempt that holds it now.
    Returns the backoff of each delivery to be tried again.
    """
    now = timezone.now()
    attempts: list[WebhookAttempt] = []
    delivered: list[UUID] = []
    failed: dict[UUID, dict[str, Any]] = {}
    retry_in: dict[UUID, float] = {}
    for delivery, outcome in outcomes:
        number = delivery.attempts + 1
        if outcome.ok:
            delivered.append(delivery.pk)
        elif number >= settings.WEBHOOK_MAX_ATTEMPTS or not delivery.subscription.is_active:
            failed[delivery.pk] = {"status": WebhookDelivery.Status.DEAD, "next_attempt_at": None}
            metrics.WEBHOOK_OUTCOMES.labels("dead").inc()
            logger.warning("webhook delivery %s dead-lettered: %s", delivery.pk, outcome.error)
        else:
            retry_in[delivery.pk] = backoff_seconds(
                attempt=number,
                base=settings.WEBHOOK_RETRY_BACKOFF_SECONDS,
                maximum=settings.EVENTS_RETRY_BACKOFF_MAX_SECONDS,
            )
            failed[delivery.pk] = {
                "status": WebhookDelivery.Status.RETRYING,
                "next_attempt_at": now + timedelta(seconds=retry_in[delivery.pk]),
            }
        attempts.append(
            WebhookAttempt(
                delivery=delivery,
                number=number,
                status_code=outcome.status_code,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
                retry_in_ms=int(retry_in[delivery.pk] * 1000) if delivery.pk in retry_in else None,
            )
        )
    held = WebhookDelivery.objects.filter(claim_token=token)
    release = {"claimed_until": None, "claim_token": None}
    with transaction.atomic():
        WebhookAttempt.objects.bulk_create(attempts)
        if delivered:
            held.filter(pk__in=delivered).update(
                status=WebhookDelivery.Status.DELIVERED,
                delivered_at=now,
                next_attempt_at=None,
                attempts=F("attempts") + 1,
                last_error="",
                **release,
            )
        errors = {delivery.pk: outcome.error for delivery, outcome in outcomes}
        for pk, changes in failed.items():
            if not held.filter(pk=pk).update(
                attempts=F("attempts") + 1, last_error=errors[pk], **changes, **release
            ):
                retry_in.pop(pk, None)
                logger.warning("webhook delivery %s: claim lost; the outcome is not applied", pk)
        if untried:
            held.filter(pk__in=[delivery.pk for delivery in untried]).update(**release)
    for delivery in untried:
        retry_in[delivery.pk] = 0.0
    return retry_in


def _post(
    *, subscription: WebhookSubscription, event: OutboxEvent, target: ssrf.Target
) -> _Outcome:
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
    known = registry.topics()
    unknown = [topic for topic in subscription.topics if topic not in known]
    if not subscription.topics or unknown:
        errors["topics"] = [f"Choose one or more of: {', '.join(known)}."]
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


def _enqueue_deliveries(*, delivery_ids: list[UUID]) -> None:
    try:
        current_app.tasks[DELIVER_WEBHOOKS_TASK].apply_async(
            args=[[str(pk) for pk in delivery_ids]], retry=True, retry_policy=PUBLISH_RETRY
        )
    except Exception:
        # The delivery rows are committed and due: webhook_sweep_stalled enqueues them later.
        logger.warning("could not enqueue webhook deliveries %s", delivery_ids, exc_info=True)
