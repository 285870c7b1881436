"""Reads of users. Views and admin read users through these functions."""

from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from users.filters import UserFilter
from users.models import User


def user_get(*, user_id: UUID, viewer: User) -> User | None:
    """The user with this id if `viewer` may see it (themselves, or staff), else None.

    Visibility is decided before the lookup, so a caller learns nothing about ids it may
    not see: the API answers 404 for both "absent" and "not yours".
    """
    if not viewer.is_staff and viewer.pk != user_id:
        return None
    return User.objects.filter(pk=user_id).first()


def user_list(*, filters: dict[str, Any] | None = None) -> QuerySet[User]:
    """All users matching `filters` (see UserFilter), in (date_joined, id) order.

    Raises ValidationError naming each invalid filter value.
    """
    filterset = UserFilter(data=filters or {}, queryset=User.objects.all())
    if not filterset.is_valid():
        raise ValidationError(filterset.errors)
    return filterset.qs.order_by("date_joined", "id")
