"""Cursor pagination for the webhook subscription list."""

from core.http.pagination import StrictCursorPagination


class WebhookSubscriptionPagination(StrictCursorPagination):
    """Oldest first, as the selector orders them."""

    ordering = ("created_at", "id")
