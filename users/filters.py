"""Filters for the user list, validated like any other input."""

from django.db.models import QuerySet
from django_filters import rest_framework as filters

from users.models import User, normalize_email


class UserFilter(filters.FilterSet):
    """`email` (case-insensitive exact), `is_active`, `joined_after`, `joined_before`."""

    email = filters.CharFilter(method="filter_email")
    # A plain BooleanFilter reads "maybe" as "no filter"; a bad value must be a 400.
    is_active = filters.TypedChoiceFilter(
        choices=(("true", "true"), ("false", "false")), coerce=lambda value: value == "true"
    )
    joined_after = filters.IsoDateTimeFilter(field_name="date_joined", lookup_expr="gte")
    joined_before = filters.IsoDateTimeFilter(field_name="date_joined", lookup_expr="lt")

    class Meta:
        model = User
        fields = ["email", "is_active", "joined_after", "joined_before"]

    def filter_email(self, queryset: QuerySet[User], name: str, value: str) -> QuerySet[User]:
        """Match the canonical email, so the unique index serves the lookup."""
        return queryset.filter(email=normalize_email(value))
