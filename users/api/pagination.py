"""Cursor pagination for the user list: stable while rows are inserted, no COUNT."""

from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.views import APIView


class UserCursorPagination(CursorPagination):
    """Ordered by (date_joined, id). A `page_size` above the maximum is capped, not refused;
    one that is not a positive integer is a 400 (DRF would quietly use the default)."""

    ordering = ("date_joined", "id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request: Request) -> int:
        """The requested page size, capped at `max_page_size`; the default if none asked."""
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
            raise ValidationError({self.page_size_query_param: ["Enter a positive integer."]})
        return min(int(raw), self.max_page_size)

    def get_schema_operation_parameters(self, view: APIView) -> list[dict[str, Any]]:
        """DRF's parameters, with the lower bound of `page_size` stated."""
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["minimum"] = 1
        return parameters
