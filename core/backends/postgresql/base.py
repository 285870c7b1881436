"""django-prometheus's PostgreSQL backend (query metrics by alias) that fails fast when down.

With the server down, the psycopg pool makes every request wait the whole pool timeout
for a connection it cannot open; requests then queue behind each other in the web
workers, and the 503s come after several timeouts (found by `make chaos`). Here, once a
borrow has timed out for want of a connection, the next attempts in this process fail at
once for FAIL_FAST_SECONDS; then one waits again, which also finds the server back.
"""

import threading
import time
from typing import Any

import psycopg
from django_prometheus.db.backends.postgresql.base import (
    DatabaseWrapper as PrometheusDatabaseWrapper,
)
from psycopg_pool import PoolTimeout

FAIL_FAST_SECONDS = 1.0

_lock = threading.Lock()
_unreachable_until: dict[str, float] = {}


class DatabaseWrapper(PrometheusDatabaseWrapper):
    """The backend of every PostgreSQL alias (config/settings.py)."""

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        """Borrow from the pool, unless it could not connect a moment ago."""
        if self.pool is None:
            return super().get_new_connection(conn_params)
        with _lock:
            until = _unreachable_until.get(self.alias, 0.0)
        if time.monotonic() < until:
            raise psycopg.OperationalError(f"{self.alias} was unreachable moments ago")
        try:
            connection = super().get_new_connection(conn_params)
        except PoolTimeout:
            stats = self.pool.get_stats()
            # A full pool timed out because every connection is in use: that is load, not
            # an outage, and the next borrow may well succeed.
            if stats.get("pool_size", 0) < self.pool.max_size:
                with _lock:
                    _unreachable_until[self.alias] = time.monotonic() + FAIL_FAST_SECONDS
            raise
        with _lock:
            _unreachable_until.pop(self.alias, None)
        return connection
