"""events.metrics: the collector reads backlog, age, dead letters and breakers."""

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from events.metrics import OutboxCollector
from events.tests.factories import (
    OutboxEventFactory,
    WebhookDeliveryFactory,
    WebhookSubscriptionFactory,
)

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
    OutboxEventFactory.create(created_at=timezone.now() - timedelta(seconds=90))
    OutboxEventFactory.create()
    published = OutboxEventFactory.create(published=True)
    sub = WebhookSubscriptionFactory.create(breaker_opened_at=timezone.now())
    WebhookDeliveryFactory.create(subscription=sub, event=published, dead=True)

    found = values()
    assert found["events_outbox_backlog"] == 2
    assert 90 <= found["events_outbox_oldest_unpublished_age_seconds"] < 120
    assert found["webhook_dead_letters"] == 1
    assert found[f"webhook_breaker_state[{sub.pk}]"] == 1


def test_the_collector_is_registered() -> None:
    assert REGISTRY.get_sample_value("events_outbox_backlog") == 0
