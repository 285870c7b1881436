"""events.metrics: the collector reads backlog, age, dead letters and breakers."""

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from events.metrics import OutboxCollector
from events.models import OutboxEvent, WebhookDelivery, WebhookSubscription
from users.topics import USER_CREATED

pytestmark = pytest.mark.django_db


def values() -> dict[str, float]:
    found = {}
    for family in OutboxCollector().collect():
        for sample in family.samples:
            key = sample.name + "".join(f"[{v}]" for v in sample.labels.values())
            found[key] = sample.value
    return found


def test_an_empty_outbox() -> None:
    assert values() == {
        "events_outbox_backlog": 0,
        "events_outbox_oldest_unpublished_age_seconds": 0,
        "webhook_dead_letters": 0,
    }


def test_backlog_age_dead_letters_and_breaker_state() -> None:
    OutboxEvent.objects.create(
        topic=USER_CREATED,
        aggregate_id="a",
        payload={},
        created_at=timezone.now() - timedelta(seconds=90),
    )
    OutboxEvent.objects.create(topic=USER_CREATED, aggregate_id="b", payload={})
    published = OutboxEvent.objects.create(
        topic=USER_CREATED, aggregate_id="c", payload={}, published_at=timezone.now()
    )
    sub = WebhookSubscription.objects.create(
        url="https://x.example.com",
        topics=[USER_CREATED],
        secret="s",
        breaker_opened_at=timezone.now(),
    )
    WebhookDelivery.objects.create(
        subscription=sub, event=published, status=WebhookDelivery.Status.DEAD
    )

    found = values()
    assert found["events_outbox_backlog"] == 2
    assert 90 <= found["events_outbox_oldest_unpublished_age_seconds"] < 120
    assert found["webhook_dead_letters"] == 1
    assert found[f"webhook_breaker_state[{sub.pk}]"] == 1


def test_the_collector_is_registered() -> None:
    assert REGISTRY.get_sample_value("events_outbox_backlog") == 0
