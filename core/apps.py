from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Cross-cutting infrastructure: error handling, middleware, health."""

    name = "core"
