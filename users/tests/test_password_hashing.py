"""users.password_hashing: bounded Argon2 parameters; hashes made with Django's defaults
still log in and are rehashed with the bounded ones."""

from typing import Any

import argon2
import pytest
from django.contrib.auth.hashers import Argon2PasswordHasher, check_password, make_password
from rest_framework.test import APIClient

from users.models import User
from users.password_hashing import BoundedArgon2PasswordHasher
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "violet-harbour-lantern-42"
HASHERS = [
    "users.password_hashing.BoundedArgon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]


def parameters(encoded: str) -> argon2.Parameters:
    return argon2.extract_parameters("$" + encoded.split("$", 1)[1])


def test_new_hashes_are_argon2id_bounded_to_19_mib(settings: Any) -> None:
    settings.PASSWORD_HASHERS = HASHERS
    encoded = make_password(PASSWORD)
    used = parameters(encoded)
    assert encoded.startswith("argon2$argon2id$")
    assert (used.memory_cost, used.time_cost, used.parallelism) == (19 * 1024, 2, 1)
    assert check_password(PASSWORD, encoded)
    assert not BoundedArgon2PasswordHasher().must_update(encoded)


def test_a_hash_with_djangos_defaults_logs_in_and_is_rehashed(settings: Any) -> None:
    settings.PASSWORD_HASHERS = HASHERS
    user: User = UserFactory.create()
    old = make_password(PASSWORD, hasher=Argon2PasswordHasher())
    assert parameters(old).memory_cost == Argon2PasswordHasher.memory_cost
    User.objects.filter(pk=user.pk).update(password=old)

    response = APIClient().post(
        "/api/v1/auth/token/", {"email": user.email, "password": PASSWORD}, format="json"
    )

    assert response.status_code == 200
    rehashed = User.objects.get(pk=user.pk).password
    assert parameters(rehashed).memory_cost == 19 * 1024
    assert check_password(PASSWORD, rehashed)
