"""HTTP endpoints for webhook subscriptions (staff only). Thin: validate, call, serialize."""

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response

from core.http.validation import validated
from events import selectors, webhooks
from events.api.pagination import WebhookSubscriptionPagination
from events.api.serializers import (
    WebhookSubscriptionCreatedSerializer,
    WebhookSubscriptionCreateSerializer,
    WebhookSubscriptionSerializer,
    WebhookSubscriptionUpdateSerializer,
)
from events.models import WebhookSubscription

_id = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH)


@extend_schema_view(
    create=extend_schema(
        request=WebhookSubscriptionCreateSerializer,
        responses={201: WebhookSubscriptionCreatedSerializer},
        description="The response carries the signing secret; it is never shown again.",
    ),
    retrieve=extend_schema(parameters=[_id]),
    partial_update=extend_schema(parameters=[_id], request=WebhookSubscriptionUpdateSerializer),
    destroy=extend_schema(parameters=[_id]),
)
class WebhookSubscriptionViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[WebhookSubscription],
):
    """Webhook subscriptions: endpoints that receive signed event POSTs. Staff only.

    Listing, reading and deleting are DRF's mixins over `get_queryset()`. Creating and
    changing are written out: each reads one shape and answers with another (the
    creation's answer is the only one that shows the secret), which the mixins, built on
    one serializer for both, cannot express without moving the service call into it.
    """

    serializer_class = WebhookSubscriptionSerializer
    permission_classes = [IsAdminUser]
    pagination_class = WebhookSubscriptionPagination
    # Only well-formed (lowercase) UUIDs match the route; anything else is a plain 404.
    lookup_value_converter = "uuid"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[WebhookSubscription]:
        """Every subscription: the route is staff only, and staff see them all."""
        return selectors.webhook_subscription_list()

    def perform_destroy(self, instance: WebhookSubscription) -> None:
        """Delete a subscription and its delivery history."""
        webhooks.webhook_subscription_delete(subscription=instance)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Subscribe an endpoint; the response shows the secret once."""
        data = validated(WebhookSubscriptionCreateSerializer, request.data)
        subscription = webhooks.webhook_subscription_create(**data)
        return Response(
            WebhookSubscriptionCreatedSerializer(subscription).data,
            status=status.HTTP_201_CREATED,
        )

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Change the URL, topics, active flag, or rotate the secret."""
        subscription = self.get_object()
        data = validated(WebhookSubscriptionUpdateSerializer, request.data)
        subscription = webhooks.webhook_subscription_update(subscription=subscription, data=data)
        return Response(WebhookSubscriptionSerializer(subscription).data)
