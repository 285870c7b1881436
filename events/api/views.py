"""HTTP endpoints for webhook subscriptions (staff only). Thin: validate, call, serialize."""

from uuid import UUID

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response

from core.validation import validated
from events import selectors, webhooks
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
class WebhookSubscriptionViewSet(viewsets.GenericViewSet[WebhookSubscription]):
    """Webhook subscriptions: endpoints that receive signed event POSTs. Staff only."""

    serializer_class = WebhookSubscriptionSerializer
    permission_classes = [IsAdminUser]
    pagination_class = None
    lookup_value_regex = (
        "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    )
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[WebhookSubscription]:
        """Nothing: the browsable API asks for a queryset to build its filter form; the
        views read through the selectors."""
        return WebhookSubscription.objects.none()

    def get_object(self) -> WebhookSubscription:
        """The subscription in the URL, or 404."""
        subscription = selectors.webhook_subscription_get(subscription_id=UUID(self.kwargs["pk"]))
        if subscription is None:
            raise NotFound()
        return subscription

    def list(self, request: Request) -> Response:
        """Every subscription."""
        subscriptions = selectors.webhook_subscription_list()
        return Response(WebhookSubscriptionSerializer(subscriptions, many=True).data)

    def create(self, request: Request) -> Response:
        """Subscribe an endpoint; the response shows the secret once."""
        data = validated(WebhookSubscriptionCreateSerializer, request.data)
        subscription = webhooks.webhook_subscription_create(**data)
        return Response(
            WebhookSubscriptionCreatedSerializer(subscription).data,
            status=status.HTTP_201_CREATED,
        )

    def retrieve(self, request: Request, pk: str) -> Response:
        """One subscription."""
        return Response(WebhookSubscriptionSerializer(self.get_object()).data)

    def partial_update(self, request: Request, pk: str) -> Response:
        """Change the URL, topics, active flag, or rotate the secret."""
        subscription = self.get_object()
        data = validated(WebhookSubscriptionUpdateSerializer, request.data)
        subscription = webhooks.webhook_subscription_update(subscription=subscription, data=data)
        return Response(WebhookSubscriptionSerializer(subscription).data)

    def destroy(self, request: Request, pk: str) -> Response:
        """Delete a subscription and its delivery history."""
        webhooks.webhook_subscription_delete(subscription=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
