"""Reads of users. Views and admin read users through these functions."""

from typing import Any, NamedTuple
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.db.models.functions import Lower

from users.cache import USER_REPRESENTATION_FIELDS, user_entry_get
from users.filters import UserFilter
from users.models import User

# A UUID in its canonical, hyphenated form: the admin's search box also takes an id.
UUID_LENGTH = 36


def user_visible(*, user_id: UUID, viewer: User) -> bool:
    """Whether `viewer` may see the user with this id: themselves, or any user as staff."""
    return viewer.is_staff or viewer.pk == user_id


def user_get(*, user_id: UUID, viewer: User) -> User | None:
    """The user with this id if `viewer` may see it (themselves, or staff), else None.

    Visibility is decided before the lookup, so a caller learns nothing about ids it may
    not see: the API answers 404 for both "absent" and "not yours". The viewer's own id
    answers with `viewer` itself, the user this request was authenticated as, with no
    query: every write re-reads and locks the row it changes (users.services), so this
    copy only decides who may act, as authentication already did.
    """
    if not user_visible(user_id=user_id, viewer=viewer):
        return None
    if user_id == viewer.pk:
        return viewer
    return User.objects.filter(pk=user_id).first()


class UserRepresentation(NamedTuple):
    """A user as the API shows it, and the version of the row it was made from."""

    data: dict[str, Any]
    version: int


def user_representation_get(*, user_id: UUID, viewer: User) -> UserRepresentation | None:
    """The API representation of the user with this id if `viewer` may see it, else None.

    Served from the user cache (users.cache), which is read only after the same
    visibility check as `user_get`: the cache never answers for an id the viewer may
    not see, and unknown ids are cached as absent. With it, the row's version, which
    every write increments: it names this content (the API's ETag).
    """
    if not user_visible(user_id=user_id, viewer=viewer):
        return None
    entry = user_entry_get(user_id)
    if entry is None:
        return None
    return UserRepresentation(data=dict(entry["user"]), version=int(entry["version"]))


def user_list(*, filters: dict[str, Any] | None = None) -> QuerySet[User]:
    """All users matching `filters` (see UserFilter), in (date_joined, id) order.

    Raises ValidationError naming each invalid filter value.
    """
    users = User.objects.all()
    if not filters or UserFilter.base_filters.keys().isdisjoint(filters):
        # Nothing to filter by (other parameters are not the filters'): skip building the
        # filter form, about a tenth of a page's CPU.
        return users.order_by("date_joined", "id")
    filterset = UserFilter(data=filters, queryset=users)
    if not filterset.is_valid():
        raise ValidationError(filterset.errors)
    return filterset.qs.order_by("date_joined", "id")


def user_list_rows(*, filters: dict[str, Any] | None = None) -> QuerySet[User, dict[str, Any]]:
    """`user_list` as rows: the fields the API shows (USER_REPRESENTATION_FIELDS) and the
    row's `version`, without building a model instance per row.

    Raises ValidationError naming each invalid filter value.
    """
    return user_list(filters=filters).values(*USER_REPRESENTATION_FIELDS, "version")


def user_search(*, term: str, queryset: QuerySet[User] | None = None) -> QuerySet[User]:
    """Users whose email or display name starts with `term`, ignoring case; or the user
    whose id it is.

    Only prefix matches, each served by a B-tree index at any table size: the email's
    `varchar_pattern_ops` index (emails are stored lower-case, so the term is lower-cased
    rather than the column) and the `lower(display_name) text_pattern_ops` index of
    migration 0002. A term with an `@` can only be an email, so display names are skipped.
    An exact email is its own prefix. A `%term%` search would have to read every row.
    """
    users = User.objects.all() if queryset is None else queryset
    term = term.strip().lower()
    if not term:
        return users
    if len(term) == UUID_LENGTH:
        try:
            return users.filter(pk=UUID(term))
        except ValueError:
            pass
    by_email = Q(email__startswith=term)
    if "@" in term:
        return users.filter(by_email)
    # The expression must be the indexed one, lower(display_name), not Django's istartswith
    # (which compiles to UPPER(...)::text and so could use no index).
    return users.alias(display_name_lower=Lower("display_name")).filter(
        by_email | Q(display_name_lower__startswith=term)
    )
