from django.apps import AppConfig


class EventsConfig(AppConfig):
    """Domain events: the transactional outbox and its handlers (issue #5)."""

    name = "events"
