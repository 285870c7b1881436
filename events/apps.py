from contextlib import suppress

from django.apps import AppConfig


class EventsConfig(AppConfig):
    """Domain events: the transactional outbox, its handlers and webhooks."""

    name = "events"

    def ready(self) -> None:
        """Serve the outbox figures on every scrape, gunicorn's multiprocess mode included;
        register the webhooks' event handler and the tasks."""
        from core.observability.metrics import register_live_collector
        from events import tasks, webhooks  # noqa: F401 (they register themselves)
        from events.metrics import OutboxCollector

        # ValueError: already registered (ready() can run twice in test and reload setups).
        with suppress(ValueError):
            register_live_collector(OutboxCollector())
