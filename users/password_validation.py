"""Password validators for what Django's own miss: passwords of too few distinct
characters (eight spaces, "aaaaaaaa") and passwords made of the user's own email."""

import re
from typing import Any

from django.core.exceptions import ValidationError

# A token of the email shorter than this ("jo", "uk") would match inside too many
# honest passwords to be worth refusing.
_MIN_TOKEN_LENGTH = 3


class MinimumDistinctCharactersValidator:
    """Refuse passwords with fewer than `min_distinct` different characters."""

    def __init__(self, min_distinct: int = 5) -> None:
        self.min_distinct = min_distinct

    def validate(self, password: str, user: Any = None) -> None:
        """Raise ValidationError when the password repeats too few characters."""
        if len(set(password)) < self.min_distinct:
            raise ValidationError(
                f"This password uses too few different characters; use at least "
                f"{self.min_distinct}.",
                code="password_too_few_distinct",
            )

    def get_help_text(self) -> str:
        """Shown with the password field."""
        return f"Your password must use at least {self.min_distinct} different characters."


def _letters_and_digits(text: str) -> str:
    return "".join(char for char in text.casefold() if char.isalnum())


class EmailDerivedPasswordValidator:
    """Refuse passwords that are the user's email, or its parts, plus digits and symbols.

    Django's UserAttributeSimilarityValidator compares the whole password with each
    attribute by similarity ratio, so `carol.smith` for `carol.smith@example.com` passes
    it (the ratio is 0.65). Here the email's local part and each of its words, and the
    domain's labels, are removed from the password, as are digits and punctuation; if
    fewer than `min_remaining` letters are left, the password is only the email dressed up.
    """

    def __init__(self, min_remaining: int = 4) -> None:
        self.min_remaining = min_remaining

    def validate(self, password: str, user: Any = None) -> None:
        """Raise ValidationError when the password is made of the email's parts."""
        email = getattr(user, "email", "") or ""
        if not email:
            return
        local, _, domain = email.rpartition("@")
        words = [_letters_and_digits(local), *re.split(r"[\W_]+", local.casefold())]
        words += domain.casefold().split(".")
        tokens = sorted({w for w in words if len(w) >= _MIN_TOKEN_LENGTH}, key=len, reverse=True)
        if not tokens:
            return
        remaining = _letters_and_digits(password)
        for token in tokens:
            remaining = remaining.replace(token, "")
        remaining = "".join(char for char in remaining if not char.isdigit())
        if len(remaining) < self.min_remaining:
            raise ValidationError(
                "This password is too close to your email address.",
                code="password_from_email",
            )

    def get_help_text(self) -> str:
        """Shown with the password field."""
        return "Your password cannot be made from your email address."
