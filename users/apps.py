from django.apps import AppConfig


class UsersConfig(AppConfig):
    """Users: the custom user model, its services, selectors and API."""

    name = "users"
