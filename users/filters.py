"""Filters for the user list, validated like any other input."""

from datetime import UTC, datetime
from typing import Any

from django import forms
from django.db.models import QuerySet
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField

from users.models import User, normalize_email


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, converted to UTC.

    ISO 8601 allows offsets up to ±23:59; PostgreSQL refuses any beyond ±15:59 (a 500 if
    passed through), and in UTC every instant that Python can hold is fine.
    """

    def to_python(self, value: Any) -> datetime | None:
        """Parse, then convert to UTC; an instant outside years 1-9999 is invalid."""
        parsed: datetime | None = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(UTC)
        except OverflowError as exc:
            raise forms.ValidationError("Enter a date and time between years 1 and 9999.") from exc


class UtcIsoDateTimeFilter(filters.IsoDateTimeFilter):
    """IsoDateTimeFilter whose value is in UTC."""

    field_class = UtcIsoDateTimeField


class UserFilter(filters.FilterSet):
    """`email` (case-insensitive exact), `is_active`, `joined_after`, `joined_before`."""

    email = filters.CharFilter(method="filter_email")
    # A plain BooleanFilter reads "maybe" as "no filter"; a bad value must be a 400.
    is_active = filters.TypedChoiceFilter(
        choices=(("true", "true"), ("false", "false")), coerce=lambda value: value == "true"
    )
    joined_after = UtcIsoDateTimeFilter(field_name="date_joined", lookup_expr="gte")
    joined_before = UtcIsoDateTimeFilter(field_name="date_joined", lookup_expr="lt")

    class Meta:
        model = User
        fields = ["email", "is_active", "joined_after", "joined_before"]

    def is_valid(self) -> bool:
        """Whether every filter given parses. One given empty is an error: django-filter
        would ignore it, and list everyone to a client that meant to narrow the list."""
        valid = super().is_valid()
        for name in self.filters:
            if name in self.data and not self.data.get(name):
                if name not in self.form.errors:
                    self.form.add_error(name, "This value may not be empty.")
                valid = False
        return valid

    def filter_email(self, queryset: QuerySet[User], name: str, value: str) -> QuerySet[User]:
        """Match the canonical email, so the unique index serves the lookup."""
        return queryset.filter(email=normalize_email(value))
