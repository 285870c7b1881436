"""Test data for users."""

import factory
from factory.django import DjangoModelFactory, Password

from users.models import User

DEFAULT_PASSWORD = "a-long-test-password-1"


class UserFactory(DjangoModelFactory[User]):
    """An active, non-staff user whose password is DEFAULT_PASSWORD."""

    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    display_name = factory.Faker("name")
    password = Password(DEFAULT_PASSWORD)
