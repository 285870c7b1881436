"""Test data for events: outbox events, handler records, subscriptions, deliveries, attempts.

Each factory makes the plainest row the models accept; a test names the fields its
behaviour depends on. They build the state a test starts from: behaviour under test still
goes through the services (events.services, events.webhooks), which write these rows
themselves.
"""

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from events.models import (
    HandledEvent,
    OutboxEvent,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from users.topics import USER_UPDATED


class OutboxEventFactory(DjangoModelFactory[OutboxEvent]):
    """A user.updated event with an empty payload, not yet handed to the broker.

    `published=True`: handed to the broker when it was written.
    """

    class Meta:
        model = OutboxEvent

    class Params:
        published = factory.Trait(published_at=factory.SelfAttribute("created_at"))

    topic = USER_UPDATED
    aggregate_id = factory.Sequence(str)
    payload = factory.LazyFunction(dict)
    created_at = factory.LazyFunction(timezone.now)


class HandledEventFactory(DjangoModelFactory[HandledEvent]):
    """The record that a handler has handled an event (a new one, unless given)."""

    class Meta:
        model = HandledEvent

    event_id = factory.LazyFunction(lambda: OutboxEventFactory.create().pk)
    handler = factory.Sequence(lambda n: f"tests.handler_{n}")


class WebhookSubscriptionFactory(DjangoModelFactory[WebhookSubscription]):
    """An active subscription to user.updated, its circuit breaker closed.

    Written as is: the checks of events.webhooks.webhook_subscription_create (known
    topics, public address, generated secret) are that service's to test.
    """

    class Meta:
        model = WebhookSubscription

    url = factory.Sequence(lambda n: f"https://hooks{n}.example.com/in")
    topics = factory.LazyFunction(lambda: [USER_UPDATED])
    secret = factory.Sequence(lambda n: f"test-webhook-secret-{n:012d}")


class WebhookDeliveryFactory(DjangoModelFactory[WebhookDelivery]):
    """A pending delivery of a published event to a new subscription.

    `dead=True`: a dead letter, given up on after its attempts.
    """

    class Meta:
        model = WebhookDelivery

    class Params:
        dead = factory.Trait(status=WebhookDelivery.Status.DEAD)

    subscription = factory.SubFactory(WebhookSubscriptionFactory)
    event = factory.SubFactory(OutboxEventFactory, published=True)


class WebhookAttemptFactory(DjangoModelFactory[WebhookAttempt]):
    """An attempt of a delivery (a new one, unless given), numbered after its earlier ones."""

    class Meta:
        model = WebhookAttempt

    delivery = factory.SubFactory(WebhookDeliveryFactory)
    number = factory.LazyAttribute(lambda attempt: attempt.delivery.tries.count() + 1)
