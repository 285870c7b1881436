"""Cursor pagination for the user list."""

from core.http.pagination import StrictCursorPagination


class UserCursorPagination(StrictCursorPagination):
    """Ordered by (date_joined, id): the order the list's index serves."""

    ordering = ("date_joined", "id")
