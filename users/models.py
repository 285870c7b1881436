"""The custom user model: email is the login, a UUID is the public id."""

import uuid
from typing import Any, ClassVar

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone


class UserManager(BaseUserManager["User"]):
    """Creates users through the service layer, so `createsuperuser` is a service call too."""

    def get_by_natural_key(self, username: str | None) -> "User":
        """Look a login up by its canonical (lower-case) email."""
        return self.get(email=normalize_email(username or ""))

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> "User":
        """Create a user through `users.services.user_create`."""
        from users.services import user_create

        return user_create(email=email, password=password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> "User":
        """Create a staff superuser through `users.services.user_create`."""
        from users.services import user_create

        return user_create(
            email=email, password=password, is_staff=True, is_superuser=True, **extra
        )


def normalize_email(email: str) -> str:
    """The canonical form of an email: stripped and lower-cased.

    Emails are compared case-insensitively everywhere; storing one canonical form lets a
    plain unique index enforce that and serve every lookup.
    """
    return email.strip().lower()


class User(AbstractBaseUser, PermissionsMixin):
    """A user of the service. `id` is a random UUID so ids in URLs cannot be enumerated."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(max_length=254, unique=True)
    display_name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    # Incremented by every write (users.services), under the row lock the write holds:
    # versions follow the order of commits whatever the app servers' clocks say, which
    # is what the cache's "nothing older than the last write" rule needs. `db_default`
    # lets a release that does not know the column still insert rows.
    version = models.PositiveBigIntegerField(default=1, db_default=1, editable=False)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        ordering = ("date_joined", "id")
        indexes = [models.Index(fields=["date_joined", "id"], name="user_date_joined_id_idx")]
        constraints = [
            # The unique index on `email` is case-insensitive only while every stored
            # email is lower-case; this makes the database hold that line too.
            models.CheckConstraint(
                condition=models.Q(email=Lower("email")), name="user_email_lowercase"
            ),
        ]

    def __str__(self) -> str:
        return self.email

    def clean(self) -> None:
        """Store the canonical email, so validation and uniqueness see the saved form."""
        super().clean()
        self.email = normalize_email(self.email)


class CachedPrincipal(User):
    """A user rebuilt from the user cache for `request.user`: read-only.

    It has no password hash (the cache never holds one), so saving it would blank the
    stored hash; it refuses to be saved or deleted instead. Writes start from the row
    (users.selectors.user_get, then users.services).
    """

    class Meta:
        proxy = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Refuse: a cached principal is never written back."""
        raise TypeError("A cached principal cannot be saved; load the user row to write.")

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        """Refuse: a cached principal is never written back."""
        raise TypeError("A cached principal cannot be deleted; load the user row to write.")
