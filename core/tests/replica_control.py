"""Test helpers that act on the real streaming replica of `make test`."""

import os
import subprocess
import time
from collections.abc import Callable
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections
from prometheus_client import REGISTRY

from core.db.postgres import probe_conninfo

REPLICA = "replica_0"


def conninfo(alias: str) -> str:
    """A connection string for a database alias, outside Django's pool and its routing.

    Bounded as the replica monitor bounds its probes, so a replica that is down or paused
    answers a test's statement as quickly as it answers the monitor.
    """
    return probe_conninfo(
        connections[alias].settings_dict,
        connect_timeout=settings.REPLICA_CONNECT_TIMEOUT,
        statement_timeout=settings.REPLICA_CHECK_INTERVAL,
        application_name="tests-replica-control",
    )


def replica_sql(sql: str, params: tuple[Any, ...] = ()) -> Any:
    """Run one statement on the replica over a fresh connection; return the first value."""
    with psycopg.connect(conninfo(REPLICA), autocommit=True) as conn:
        row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def pause_replay() -> None:
    """Stop applying WAL on the replica: it stays up but falls behind."""
    replica_sql("SELECT pg_wal_replay_pause()")


def resume_replay() -> None:
    """Apply WAL again; the replica catches up."""
    replica_sql("SELECT pg_wal_replay_resume()")


def _pg_ctl(*args: str) -> None:
    command = [
        os.path.join(os.environ["PG_BINDIR"], "pg_ctl"),
        "-D",
        os.environ["SERVICES_REPLICA_DATA"],
    ]
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root; the harness runs it as this user.
        command = ["runuser", "-u", os.environ["SERVICES_PG_USER"], "--", *command]
    subprocess.run([*command, *args], check=True, capture_output=True, timeout=60, cwd="/")


def stop_replica() -> None:
    """Kill the replica server at once, as a crash would."""
    _pg_ctl("stop", "-m", "immediate", "-w")


def start_replica() -> None:
    """Start the replica server again and wait until it accepts connections."""
    _pg_ctl(
        "start",
        "-w",
        "-t",
        "60",
        "-l",
        os.path.join(os.environ["SERVICES_DIR"], "log", "replica-restart.log"),
    )


def wait_until(condition: Callable[[], bool], *, timeout: float = 15.0, what: str) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def executed_on(alias: str) -> float:
    """Statements run on an alias so far, by any thread (django-prometheus's counter)."""
    value = REGISTRY.get_sample_value(
        "django_db_execute_total", {"alias": alias, "vendor": "postgresql"}
    )
    return value or 0.0
