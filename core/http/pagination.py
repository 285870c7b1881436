"""Pagination: the API's cursor pages, and admin pages that do not COUNT a large table."""

from functools import cached_property
from typing import Any

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.views import APIView


class StrictCursorPagination(CursorPagination):
    """Cursor pages (stable while rows are inserted, no COUNT) for the API's lists.

    A `page_size` above the maximum is capped, not refused; one that is not a positive
    integer is a 400, where DRF would quietly use the default. Subclasses set `ordering`.
    """

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


# Below this many rows an exact COUNT is cheap enough and more useful than an estimate.
EXACT_COUNT_LIMIT = 100_000


class EstimatedCountPaginator(Paginator):
    """Uses PostgreSQL's planner estimate for the total of an unfiltered, large table.

    An exact COUNT(*) of a million rows scans the whole table on every changelist load;
    the planner's `reltuples` is kept current by autovacuum and costs one catalog read.
    Filtered querysets (searches, filters) are still counted exactly.
    """

    @cached_property
    def count(self) -> int:
        """The estimate for a large unfiltered PostgreSQL table, else the exact count."""
        queryset = self.object_list
        if isinstance(queryset, QuerySet) and not queryset.query.where:
            estimate = _estimated_rows(queryset)
            if estimate is not None and estimate > EXACT_COUNT_LIMIT:
                return estimate
        return super().count


def _estimated_rows(queryset: QuerySet) -> int | None:
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
            [queryset.model._meta.db_table],
        )
        row = cursor.fetchone()
    # reltuples is -1 for a table never vacuumed or analyzed.
    return int(row[0]) if row and row[0] >= 0 else None
