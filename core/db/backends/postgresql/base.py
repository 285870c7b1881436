"""django-prometheus's PostgreSQL backend (query metrics by alias) that fails fast when down.

With the server down, the psycopg pool makes every request wait the whole pool timeout
for a connection it cannot open, and the requests queue behind each other in the web
workers. Once the server is back, the pool may still be sleeping out its reconnection
backoff (seconds, doubling with each failure), so requests keep failing after recovery.
Both found by `make chaos` (docs/reliability.md). Here, once a borrow has timed out for
want of a connection, the alias counts as unreachable in this process: each later
connection first asks the server itself (a direct connection, at most once every
PROBE_INTERVAL_SECONDS, failing at once in between); while it does not answer the
request fails at once, and when it answers, a fresh pool replaces the one in backoff.

That is a circuit breaker, written here rather than with pybreaker: its trial after the
cool-down is a real call, which would go through the pool still in backoff; here the
trial is a direct connection and success replaces the pool. docs/reliability.md
("Circuit breakers") compares it with the project's other three.
"""

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from django_prometheus.db.backends.postgresql.base import (
    DatabaseWrapper as PrometheusDatabaseWrapper,
)
from psycopg_pool import ConnectionPool, PoolTimeout

from core.db.postgres import probe_conninfo

PROBE_INTERVAL_SECONDS = 1.0
# libpq's smallest connect timeout; a refused connection fails at once anyway.
PROBE_CONNECT_TIMEOUT = 2


class Outages:
    """The aliases this process found unreachable, and when each may next be probed.

    One for the process: each thread has a DatabaseWrapper of its own, and what one
    learns of a server spares the others the wait. `clock` is monotonic seconds.
    """

    def __init__(
        self, *, probe_interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.probe_interval = probe_interval
        self.clock = clock
        self._lock = threading.Lock()
        self._next_probe: dict[str, float] = {}

    def next_probe(self, alias: str) -> float | None:
        """When `alias` may be probed again; None while it is not known to be down."""
        with self._lock:
            return self._next_probe.get(alias)

    def mark_down(self, alias: str) -> None:
        """`alias` did not answer: fail its connections at once for one probe interval."""
        with self._lock:
            self._next_probe[alias] = self.clock() + self.probe_interval

    def mark_up(self, alias: str) -> None:
        """`alias` answered: its connections go to the pool again."""
        with self._lock:
            self._next_probe.pop(alias, None)


OUTAGES = Outages(probe_interval=PROBE_INTERVAL_SECONDS)


class DatabaseWrapper(PrometheusDatabaseWrapper):
    """The backend of every PostgreSQL alias (config/settings.py)."""

    @classmethod
    def open_pools(cls) -> dict[str, ConnectionPool]:
        """This process's connection pools by alias, without opening any that is not open.

        Django keeps them in a class attribute and its `pool` property creates a missing
        one, which would connect; metrics must only look.
        """
        return dict(cls._connection_pools)

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        """Borrow from the pool, unless the server was found unreachable and still is."""
        if self.pool is None:
            return super().get_new_connection(conn_params)
        next_probe = OUTAGES.next_probe(self.alias)
        if next_probe is not None:
            if OUTAGES.clock() < next_probe:
                raise psycopg.OperationalError(f"{self.alias} is unreachable")
            if not self._server_answers():
                # The next probe one interval from now, however often this is asked.
                OUTAGES.mark_down(self.alias)
                raise psycopg.OperationalError(f"{self.alias} is unreachable")
            # Back: the old pool may be waiting out its reconnection backoff.
            self.close_pool()
            OUTAGES.mark_up(self.alias)
        try:
            return super().get_new_connection(conn_params)
        except PoolTimeout:
            # A full pool timed out because every connection is in use: that is load, not
            # an outage. Below its size, the pool could not connect.
            if self.pool.get_stats().get("pool_size", 0) < self.pool.max_size:
                OUTAGES.mark_down(self.alias)
            raise

    def _server_answers(self) -> bool:
        conninfo = probe_conninfo(
            self.settings_dict, connect_timeout=PROBE_CONNECT_TIMEOUT, statement_timeout=1
        )
        try:
            with psycopg.connect(conninfo, autocommit=True) as connection:
                connection.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True
