"""Run by scripts/browser_tests.sh through `manage.py shell`: one dead-lettered webhook
delivery for the browser test of the admin's retry action.

Rows are made directly: dead-lettering one for real takes a worker, a failing endpoint and
every retry's backoff, which events/tests/test_tasks.py already covers end to end.
"""

from django.utils import timezone

from events.models import OutboxEvent, WebhookDelivery, WebhookSubscription

event = OutboxEvent.objects.filter(topic="user.created").earliest("created_at")
subscription = WebhookSubscription.objects.create(
    url="https://hooks.example.com/browser-test",
    topics=["user.created"],
    secret="browser-test-secret",  # noqa: S106 (test data)
    breaker_opened_at=timezone.now(),
    consecutive_failures=8,
)
WebhookDelivery.objects.create(
    subscription=subscription,
    event=event,
    status=WebhookDelivery.Status.DEAD,
    attempts=8,
    last_error="HTTP 503 from the endpoint",
)
