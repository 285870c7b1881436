from django.apps import AppConfig


class UsersConfig(AppConfig):
    """Users: the custom user model, its services, selectors and API."""

    name = "users"

    def ready(self) -> None:
        """Connect the failed-login counters to Django's login signals."""
        from users import login_throttle  # noqa: F401 (connects its receivers)
