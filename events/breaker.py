"""A circuit breaker per webhook subscription, its state in the subscription's row.

Why not pybreaker: its default state is per process, so each of N worker processes would
hammer a dead endpoint FAIL_MAX times on its own and forget after a restart; its Redis
storage would tie webhook delivery to a second store (and `make run` has no Redis). The
state is two columns on a row the delivery already reads, each outcome recorded by one
atomic UPDATE (no lock is held while a request is in flight), so every process shares it
and it survives restarts. The rules are pybreaker's:

- closed: requests go through; FAIL_MAX consecutive failures open it.
- open: requests fail fast, without touching the endpoint, for RESET seconds.
- half-open (RESET has passed): requests go through as trials; a success closes it, a
  failure opens it again for another RESET. Concurrent trials are possible (one per
  worker at most), which is harmless for an endpoint that is back.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from events.models import WebhookSubscription

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


def breaker_state(*, opened_at: datetime | None, now: datetime | None = None) -> str:
    """closed, open or half_open, from the time the breaker opened."""
    if opened_at is None:
        return CLOSED
    reset = timedelta(seconds=settings.WEBHOOK_BREAKER_RESET_SECONDS)
    return OPEN if (now or timezone.now()) - opened_at < reset else HALF_OPEN


def breaker_allows(*, subscription: WebhookSubscription) -> bool:
    """Whether a request to the subscription's endpoint may be made now."""
    return breaker_state(opened_at=subscription.breaker_opened_at) != OPEN


def breaker_record(*, subscription: WebhookSubscription, success: bool) -> None:
    """Count one request's outcome; open or close the breaker accordingly.

    One UPDATE, evaluated by the database against the row's current values, so outcomes
    recorded at once by several workers all count. A success against a breaker that was
    closed with no failures counted when `subscription` was read writes nothing: the
    common case costs no statement, and a failure counted meanwhile by another worker
    stays counted until the next success. The object's fields follow the outcome.
    """
    if success:
        if subscription.consecutive_failures or subscription.breaker_opened_at:
            WebhookSubscription.objects.filter(pk=subscription.pk).update(
                consecutive_failures=0, breaker_opened_at=None
            )
            subscription.consecutive_failures, subscription.breaker_opened_at = 0, None
        return
    now = timezone.now()
    reset = timedelta(seconds=settings.WEBHOOK_BREAKER_RESET_SECONDS)
    # `subscription` follows too, as this process saw it: the next request of the same
    # batch to this endpoint is refused once the breaker opened.
    subscription.consecutive_failures += 1
    if (
        breaker_state(opened_at=subscription.breaker_opened_at, now=now) == HALF_OPEN
        or subscription.consecutive_failures >= settings.WEBHOOK_BREAKER_FAIL_MAX
    ):
        subscription.breaker_opened_at = now
    half_open = Q(breaker_opened_at__lte=now - reset)
    # Compared with the count before this failure: the UPDATE reads the old row.
    reaches_max = Q(consecutive_failures__gte=settings.WEBHOOK_BREAKER_FAIL_MAX - 1)
    WebhookSubscription.objects.filter(pk=subscription.pk).update(
        consecutive_failures=F("consecutive_failures") + 1,
        breaker_opened_at=Case(
            When(half_open | reaches_max, then=Value(now)), default=F("breaker_opened_at")
        ),
    )


def breaker_reset(*, subscription: WebhookSubscription) -> WebhookSubscription:
    """Close the breaker: an operator says the endpoint is back."""
    subscription.consecutive_failures = 0
    subscription.breaker_opened_at = None
    subscription.save(update_fields=["consecutive_failures", "breaker_opened_at"])
    return subscription
