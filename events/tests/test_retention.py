"""events.retention: what is past its age goes, in batches; nothing owed ever does."""

from datetime import timedelta

import pytest
from django.utils import timezone

from events.models import HandledEvent, OutboxEvent, WebhookAttempt, WebhookDelivery
from events.retention import retention_purge
from events.tests.factories import (
    HandledEventFactory,
    OutboxEventFactory,
    WebhookAttemptFactory,
    WebhookDeliveryFactory,
)

pytestmark = pytest.mark.django_db

Status = WebhookDelivery.Status


@pytest.fixture(autouse=True)
def _retention(settings) -> None:
    settings.OUTBOX_RETENTION_DAYS = 30
    settings.HANDLED_EVENT_RETENTION_DAYS = 30
    settings.WEBHOOK_ATTEMPT_RETENTION_DAYS = 14
    # Small batches, so that several are needed.
    settings.RETENTION_BATCH_SIZE = 2


def event(*, age_days: float, published: bool = True) -> OutboxEvent:
    return OutboxEventFactory.create(
        payload={"email": "ann@example.com"},
        created_at=timezone.now() - timedelta(days=age_days),
        published=published,
    )


def delivery(of: OutboxEvent, status: str, *, attempt_age_days: float) -> WebhookDelivery:
    result = WebhookDeliveryFactory.create(event=of, status=status)
    WebhookAttemptFactory.create(
        delivery=result, attempted_at=timezone.now() - timedelta(days=attempt_age_days)
    )
    return result


def test_old_published_events_go_with_their_finished_deliveries() -> None:
    old = [event(age_days=40) for _ in range(5)]
    delivered = delivery(old[0], Status.DELIVERED, attempt_age_days=40)
    recent = event(age_days=29)

    purged = retention_purge()

    assert purged["outbox_events"] == 5
    assert list(OutboxEvent.objects.all()) == [recent]
    assert not WebhookDelivery.objects.filter(pk=delivered.pk).exists()
    assert not WebhookAttempt.objects.exists()


def test_unpublished_events_and_events_still_owed_a_delivery_stay() -> None:
    unpublished = event(age_days=400, published=False)
    statuses = (Status.PENDING, Status.RETRYING, Status.RETRYING)
    owed = [event(age_days=400) for _ in statuses]
    for owed_event, status in zip(owed, statuses, strict=True):
        delivery(owed_event, status, attempt_age_days=400)

    assert retention_purge()["outbox_events"] == 0
    assert set(OutboxEvent.objects.all()) == {unpublished, *owed}
    # The attempts of a delivery still retrying are its history: they stay too.
    assert WebhookAttempt.objects.count() == 3


def test_old_attempts_of_finished_deliveries_go_their_deliveries_stay() -> None:
    kept_event = event(age_days=1)
    dead = delivery(kept_event, Status.DEAD, attempt_age_days=20)
    WebhookAttemptFactory.create(delivery=dead, number=2, attempted_at=timezone.now())

    assert retention_purge()["webhook_attempts"] == 1
    assert list(WebhookAttempt.objects.values_list("number", flat=True)) == [2]
    assert WebhookDelivery.objects.filter(pk=dead.pk).exists()


def test_old_handled_event_records_go_in_batches() -> None:
    HandledEventFactory.create_batch(5, handled_at=timezone.now() - timedelta(days=31))
    fresh = HandledEventFactory.create()

    assert retention_purge(max_batches=2)["handled_events"] == 4
    assert retention_purge()["handled_events"] == 1
    assert list(HandledEvent.objects.all()) == [fresh]
