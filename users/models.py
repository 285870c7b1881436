"""The custom user model: email is the login, a UUID is the public id."""

import contextlib
import unicodedata
import uuid
from typing import Any, ClassVar

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.core.exceptions import ValidationError
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
        # Imported on call: the service imports this module. It stays the one way in, so
        # that `createsuperuser` publishes the sign-up event and refreshes the cache too;
        # core/tests/test_import_cycles.py allows this edge and no other.
        from users.services import user_create

        return user_create(email=email, password=password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> "User":
        """Create a staff superuser through `users.services.user_create`."""
        # Imported on call, as in create_user.
        from users.services import user_create

        return user_create(
            email=email, password=password, is_staff=True, is_superuser=True, **extra
        )


def normalize_email(email: str) -> str:
    """The canonical form of an email: NFKC, stripped, the domain in IDNA, lower-cased.

    Emails are compared case-insensitively everywhere; storing one canonical form lets a
    plain unique index enforce that and serve every lookup. NFKC folds look-alike forms
    (full-width letters, ligatures) into one; the domain in its ASCII (punycode) form
    shows a Cyrillic a (U+0430) in a Latin-looking domain for what it is. Invisible
    characters are left in place for `validate_visible_text` to refuse: IDNA would
    silently drop some of them, and the account would then answer to an address its
    owner never typed.
    """
    email = unicodedata.normalize("NFKC", email).strip()
    local, at, domain = email.rpartition("@")
    if at and domain and not any(_is_invisible(char) for char in domain):
        # Not a valid domain: left as it is, for the email validator to refuse.
        with contextlib.suppress(UnicodeError):
            domain = domain.encode("idna").decode("ascii")
    return f"{local}{at}{domain}".lower()


# Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt): characters
# that render as nothing, some of them letters or marks by category (U+3164, U+FE0F).
_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
# Control, format, private-use, surrogate, unassigned, line and paragraph separators.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})
_BLANK_SYMBOLS = frozenset({"\u2800"})  # braille blank: a symbol that shows nothing


def _is_invisible(char: str) -> bool:
    code = ord(char)
    return (
        unicodedata.category(char) in _INVISIBLE_CATEGORIES
        or char in _BLANK_SYMBOLS
        or any(low <= code <= high for low, high in _DEFAULT_IGNORABLE)
    )


def validate_visible_text(value: str) -> None:
    """Refuse invisible, control and format characters (zero-width spaces, bidi overrides).

    They let two different strings display alike (`ann@exa\u200bmple.com` and
    `ann@example.com`), or reorder what is shown around them.
    """
    # Printable ASCII has none of them: the common case costs two C calls, not a
    # Unicode lookup per character.
    if value.isascii() and value.isprintable():
        return
    if any(_is_invisible(char) for char in value):
        raise ValidationError(
            "Enter text without invisible, control or formatting characters.",
            code="invisible_characters",
        )


class User(AbstractBaseUser, PermissionsMixin):
    """A user of the service. `id` is a random UUID so ids in URLs cannot be enumerated."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(max_length=254, unique=True, validators=[validate_visible_text])
    display_name = models.CharField(max_length=150, blank=True, validators=[validate_visible_text])
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
    stored hash; it refuses to be saved or deleted instead. Writes start from the row,
    which the services read and lock (users.services).
    """

    class Meta:
        proxy = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Refuse: a cached principal is never written back."""
        raise TypeError("A cached principal cannot be saved; load the user row to write.")

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        """Refuse: a cached principal is never written back."""
        raise TypeError("A cached principal cannot be deleted; load the user row to write.")
