"""Reads of events and webhooks."""

from django.db.models import QuerySet

from events.models import WebhookSubscription


def webhook_subscription_list() -> QuerySet[WebhookSubscription]:
    """Every subscription, oldest first."""
    return WebhookSubscription.objects.order_by("created_at", "id")
