from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Cross-cutting infrastructure: error handling, middleware, health."""

    name = "core"

    def ready(self) -> None:
        """Route structlog's loggers through the LOGGING handlers; register the system checks."""
        from core import checks  # noqa: F401
        from core.structured_logging import configure_structlog

        configure_structlog()
