"""Prometheus metrics of the outbox, its handlers and webhook deliveries.

Counters and the latency histogram live in the process that does the work (the worker);
the backlog and breaker figures are read from the database at scrape time by
OutboxCollector, so any process that exposes /metrics reports the true values
rather than what one worker last saw.
"""

import logging
from collections.abc import Iterable

from django.db.models import Count, Min, Q
from django.utils import timezone
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from events.breaker import CLOSED, HALF_OPEN, OPEN, breaker_state

logger = logging.getLogger(__name__)

HANDLED = Counter(
    "events_handled_total", "Events handled, per topic and handler.", ["topic", "handler"]
)
SKIPPED = Counter(
    "events_duplicates_skipped_total",
    "Redelivered events a handler had already handled.",
    ["topic", "handler"],
)
FAILED = Counter(
    "events_handler_failures_total",
    "Handler runs that raised, per topic and handler.",
    ["topic", "handler"],
)
RETRIED = Counter(
    "events_handler_retries_total",
    "Handler runs scheduled again after a failure.",
    ["topic", "handler"],
)
RELAY_FAILED = Counter(
    "events_relay_failures_total", "Events the relay could not hand to the broker."
)
RELAY_DEFERRED = Counter(
    "events_relay_deferred_total",
    "Committed events left to the sweeper because the relay's queue was full.",
)
WEBHOOK_LATENCY = Histogram(
    "webhook_request_seconds",
    "Duration of webhook HTTP requests, by outcome.",
    ["outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
WEBHOOK_OUTCOMES = Counter(
    "webhook_attempts_total",
    "Webhook delivery attempts by outcome (delivered, failed, breaker_open, dead).",
    ["outcome"],
)

BREAKER_VALUES = {CLOSED: 0, OPEN: 1, HALF_OPEN: 2}


class OutboxCollector(Collector):
    """Backlog, oldest unpublished age, dead letters and breaker states, from the database."""

    def describe(self) -> Iterable[GaugeMetricFamily]:
        """Describe without querying, so registering the collector touches no database."""
        return [
            GaugeMetricFamily("events_outbox_backlog", "Unpublished outbox events."),
            GaugeMetricFamily(
                "events_outbox_oldest_unpublished_age_seconds",
                "Age of the oldest unpublished outbox event (0 when none).",
            ),
            GaugeMetricFamily("webhook_dead_letters", "Webhook deliveries in the dead letter."),
            GaugeMetricFamily(
                "webhook_breaker_state",
                "Circuit breaker per subscription: 0 closed, 1 open, 2 half-open.",
                labels=["subscription"],
            ),
        ]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """Read the figures now; with the database unreachable, report nothing of them.

        A scrape must still serve every other metric while the database is down, which is
        when operators need them most.
        """
        try:
            families = list(self._read())
        except Exception:
            logger.warning("outbox metrics unavailable", exc_info=True)
            return
        yield from families

    def _read(self) -> Iterable[GaugeMetricFamily]:
        from events.models import OutboxEvent, WebhookDelivery, WebhookSubscription

        now = timezone.now()
        backlog = OutboxEvent.objects.filter(published_at__isnull=True).aggregate(
            count=Count("id"), oldest=Min("created_at")
        )
        yield GaugeMetricFamily(
            "events_outbox_backlog", "Unpublished outbox events.", value=backlog["count"]
        )
        oldest = backlog["oldest"]
        yield GaugeMetricFamily(
            "events_outbox_oldest_unpublished_age_seconds",
            "Age of the oldest unpublished outbox event (0 when none).",
            value=(now - oldest).total_seconds() if oldest else 0.0,
        )
        dead = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.DEAD).count()
        yield GaugeMetricFamily(
            "webhook_dead_letters", "Webhook deliveries in the dead letter.", value=dead
        )
        states = GaugeMetricFamily(
            "webhook_breaker_state",
            "Circuit breaker per subscription: 0 closed, 1 open, 2 half-open.",
            labels=["subscription"],
        )
        for sub_id, opened_at in WebhookSubscription.objects.filter(
            Q(is_active=True) | Q(breaker_opened_at__isnull=False)
        ).values_list("id", "breaker_opened_at"):
            state = breaker_state(opened_at=opened_at, now=now)
            states.add_metric([str(sub_id)], BREAKER_VALUES[state])
        yield states
