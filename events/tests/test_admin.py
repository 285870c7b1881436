"""events.admin: the outbox, subscriptions (secret shown once), deliveries and retry."""

from typing import Any

import pytest

from events.models import HandledEvent, WebhookSubscription
from events.tests.factories import (
    OutboxEventFactory,
    WebhookAttemptFactory,
    WebhookDeliveryFactory,
    WebhookSubscriptionFactory,
)
from events.webhooks import FAN_OUT
from users.topics import USER_CREATED, USER_UPDATED

pytestmark = pytest.mark.django_db


def test_the_outbox_lists_and_filters_by_status(staff_login: Any) -> None:
    pending = OutboxEventFactory.create(topic=USER_CREATED)
    published = OutboxEventFactory.create(topic=USER_UPDATED, published=True)

    page = staff_login.get("/admin/events/outboxevent/?status=pending").content.decode()
    assert str(pending.pk) in page
    assert str(published.pk) not in page
    page = staff_login.get("/admin/events/outboxevent/?topic=user.updated").content.decode()
    assert str(published.pk) in page
    assert staff_login.get(f"/admin/events/outboxevent/{pending.pk}/change/").status_code == 200


def test_dispatch_again_runs_the_handlers(staff_login: Any, eager_celery: None) -> None:
    event = OutboxEventFactory.create(topic=USER_UPDATED)

    response = staff_login.post(
        "/admin/events/outboxevent/",
        {"action": "dispatch_again", "_selected_action": [str(event.pk)]},
    )

    assert response.status_code == 302
    assert HandledEvent.objects.filter(event_id=event.pk, handler=FAN_OUT).exists()
    event.refresh_from_db()
    assert event.published_at is not None


def test_adding_a_subscription_shows_its_generated_secret_once(staff_login: Any) -> None:
    response = staff_login.post(
        "/admin/events/webhooksubscription/add/",
        {"url": "https://hooks.example.com/in", "topics": [USER_CREATED], "is_active": "on"},
        follow=True,
    )

    sub = WebhookSubscription.objects.get()
    assert sub.topics == [USER_CREATED]
    assert sub.secret in response.content.decode()
    change_page = staff_login.get(f"/admin/events/webhooksubscription/{sub.pk}/change/")
    assert sub.secret not in change_page.content.decode()


def test_changing_a_subscription_keeps_the_secret_unless_given(staff_login: Any) -> None:
    sub = WebhookSubscriptionFactory.create(topics=[USER_CREATED], secret="kept-secret-123456")
    url = f"/admin/events/webhooksubscription/{sub.pk}/change/"
    form = {"url": sub.url, "topics": [USER_CREATED, USER_UPDATED], "is_active": "on"}

    assert staff_login.post(url, form).status_code == 302
    sub.refresh_from_db()
    assert sub.secret == "kept-secret-123456"
    assert sub.topics == [USER_CREATED, USER_UPDATED]

    assert staff_login.post(url, {**form, "secret": "a-new-secret-1234567"}).status_code == 302
    sub.refresh_from_db()
    assert sub.secret == "a-new-secret-1234567"


def test_deliveries_show_their_attempts(staff_login: Any) -> None:
    delivery = WebhookDeliveryFactory.create(dead=True, attempts=1)
    WebhookAttemptFactory.create(delivery=delivery, status_code=503, error="HTTP 503")

    listing = staff_login.get("/admin/events/webhookdelivery/?status=dead").content.decode()
    assert "Dead letter" in listing
    page = staff_login.get(f"/admin/events/webhookdelivery/{delivery.pk}/change/")
    assert page.status_code == 200
    assert "HTTP 503" in page.content.decode()
    subs = staff_login.get("/admin/events/webhooksubscription/").content.decode()
    assert "closed" in subs
