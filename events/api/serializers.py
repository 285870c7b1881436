"""Input and output shapes of the webhooks API."""

from typing import Any

from rest_framework import serializers

from events import registry
from events.models import WebhookSubscription
from users.api.serializers import StrictSerializer


class WebhookSubscriptionCreateSerializer(StrictSerializer):
    """A new subscription. Without a secret the service generates one."""

    url = serializers.URLField(max_length=500)
    topics = serializers.ListField(
        child=serializers.ChoiceField(choices=registry.topics()), min_length=1
    )
    secret = serializers.CharField(
        min_length=16, max_length=200, required=False, write_only=True, trim_whitespace=False
    )
    is_active = serializers.BooleanField(required=False, default=True)


class WebhookSubscriptionUpdateSerializer(StrictSerializer):
    """Fields staff may change; `secret` rotates the key (it is never shown again)."""

    url = serializers.URLField(max_length=500, required=False)
    topics = serializers.ListField(
        child=serializers.ChoiceField(choices=registry.topics()), min_length=1, required=False
    )
    secret = serializers.CharField(
        min_length=16, max_length=200, required=False, write_only=True, trim_whitespace=False
    )
    is_active = serializers.BooleanField(required=False)


# Typed Any, as DRF's stubs type the instance argument without `many=True` lists.
class WebhookSubscriptionSerializer(serializers.Serializer[Any]):
    """A subscription as the API shows it: never its secret."""

    id = serializers.UUIDField(read_only=True)
    url = serializers.URLField(read_only=True)
    topics = serializers.ListField(child=serializers.CharField(), read_only=True)
    is_active = serializers.BooleanField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    breaker_open = serializers.SerializerMethodField()

    def get_breaker_open(self, obj: WebhookSubscription) -> bool:
        """Whether the breaker has tripped (deliveries fail fast, or trial while half-open)."""
        return obj.breaker_opened_at is not None


class WebhookSubscriptionCreatedSerializer(WebhookSubscriptionSerializer):
    """The creation response: the only time the secret is shown."""

    secret = serializers.CharField(read_only=True)
