"""Cursor pagination for the user list: stable while rows are inserted, no COUNT."""

from rest_framework.pagination import CursorPagination


class UserCursorPagination(CursorPagination):
    """Ordered by (date_joined, id). A `page_size` above the maximum is capped, not refused."""

    ordering = ("date_joined", "id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
