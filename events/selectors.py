"""Reads of events and webhooks."""

from uuid import UUID

from django.db.models import QuerySet

from events.models import WebhookSubscription


def webhook_subscription_list() -> QuerySet[WebhookSubscription]:
    """Every subscription, oldest first."""
    return WebhookSubscription.objects.order_by("created_at", "id")


def webhook_subscription_get(*, subscription_id: UUID) -> WebhookSubscription | None:
    """One subscription, or None."""
    return WebhookSubscription.objects.filter(pk=subscription_id).first()
