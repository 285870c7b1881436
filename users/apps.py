from django.apps import AppConfig


class UsersConfig(AppConfig):
    """Users: the custom user model, its services, selectors and API."""

    name = "users"

    def ready(self) -> None:
        """Connect the failed-login counters to Django's login signals; register the
        event handlers and the tasks."""
        from users import handlers, login_throttle, tasks  # noqa: F401 (they register themselves)
