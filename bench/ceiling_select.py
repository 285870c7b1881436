"""The one-SELECT ceiling: a bare WSGI app that answers `GET /api/v1/users/{id}/` with one
primary-key SELECT on the replica (where the app's cold reads go), through a psycopg pool
sized as the app's (DATABASE_POOL_MIN_SIZE / DATABASE_POOL_MAX_SIZE), and a small JSON
body built from the row. Served by the same gunicorn settings as the app. Any other path
answers 200 "ok" (gunicorn's readiness poll).
"""

import json
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

from psycopg_pool import ConnectionPool

USER_PATH = re.compile(r"^/api/v1/users/([0-9a-f-]{36})/$")
SQL = (
    "SELECT id::text, email, display_name, is_active, is_staff, date_joined::text"
    " FROM users_user WHERE id = %s"
)
_pool: ConnectionPool | None = None


def _connections() -> ConnectionPool:
    # Opened in each worker on first use, never in gunicorn's master before the fork.
    global _pool
    if _pool is None:
        _pool = ConnectionPool(
            os.environ["DATABASE_REPLICA_URLS"].split(",")[0],
            min_size=int(os.environ.get("DATABASE_POOL_MIN_SIZE", "1")),
            max_size=int(os.environ.get("DATABASE_POOL_MAX_SIZE", "10")),
            open=True,
        )
    return _pool


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The user row as JSON (404 if absent); 200 "ok" for anything else."""
    match = USER_PATH.match(environ.get("PATH_INFO", ""))
    if match is None:
        body, status = b"ok", "200 OK"
    else:
        with _connections().connection() as connection:
            row = connection.execute(SQL, (match[1],)).fetchone()
        keys = ("id", "email", "display_name", "is_active", "is_staff", "date_joined")
        body = json.dumps(dict(zip(keys, row, strict=True)) if row else {}).encode()
        status = "200 OK" if row else "404 Not Found"
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
