"""Admin pagination that does not COUNT a large table on every page load."""

from functools import cached_property

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet

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
