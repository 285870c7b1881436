from contextlib import suppress

from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Cross-cutting infrastructure: error handling, middleware, health."""

    name = "core"

    def ready(self) -> None:
        """Route structlog's loggers through the LOGGING handlers; register the broker's
        queue depths for every scrape."""
        from core.messaging.broker_probe import BrokerQueueCollector
        from core.observability.logging import configure_structlog
        from core.observability.metrics import register_live_collector

        configure_structlog()
        # ValueError: already registered (ready() can run twice in test and reload setups).
        with suppress(ValueError):
            register_live_collector(BrokerQueueCollector())
