from contextlib import suppress

from django.apps import AppConfig


class EventsConfig(AppConfig):
    """Domain events: the transactional outbox, its handlers and webhooks (issue #5)."""

    name = "events"

    def ready(self) -> None:
        """Register the outbox collector with prometheus_client's default registry."""
        from prometheus_client import REGISTRY

        from events.metrics import OutboxCollector

        # ValueError: already registered (ready() can run twice in test and reload setups).
        with suppress(ValueError):
            REGISTRY.register(OutboxCollector())
