"""Direct PostgreSQL connections for probes (replica health, readiness), outside Django's
pool: a pool would wait its own timeout for a connection, and a probe must tell about the
server itself, within a bound of its own."""

from typing import Any

import psycopg


def probe_conninfo(
    database: dict[str, Any], *, connect_timeout: int, statement_timeout: float, **extra: Any
) -> str:
    """A libpq connection string for a Django DATABASES entry, with bounded waits.

    `statement_timeout` is in seconds; `extra` passes further libpq parameters.
    """
    return psycopg.conninfo.make_conninfo(
        dbname=database.get("NAME") or "postgres",
        user=database.get("USER") or None,
        password=database.get("PASSWORD") or None,
        host=database.get("HOST") or None,
        port=database.get("PORT") or None,
        connect_timeout=connect_timeout,
        options=f"-c statement_timeout={int(statement_timeout * 1000)}",
        **extra,
    )
