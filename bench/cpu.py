"""CPU time of a process group, read from the processes' own accounting in /proc.

A scenario's CPU cost is the difference of two readings: every live process in the group
(the gunicorn master and its workers; the Celery worker and its pool children) counts its
user and system time, and each parent also counts the time of children it has reaped, so
a worker recycled mid-scenario is not lost.
"""

import os
import resource
from collections.abc import Iterator
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


# Fields of /proc/PID/stat, counted from 1 as proc(5) does: the parent's pid, the
# session, and the user and system time of the process and of its reaped children.
_PARENT, _SESSION, _UTIME, _STIME, _CUTIME, _CSTIME = 4, 6, 14, 15, 16, 17


def _process_stats() -> Iterator[tuple[int, list[int]]]:
    """(pid, stat fields 1 to 17 as numbers, field n at index n - 1) of every live process.

    Fields 1 to 3 (pid, name, state) are given as 0: nothing here reads them.
    """
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name (field 2) may hold spaces and parentheses: split after it.
            after_name = stat.read_text().rsplit(")", 1)[1].split()
            yield int(stat.parent.name), [0, 0, 0] + [int(value) for value in after_name[1:15]]
        except (OSError, IndexError, ValueError):
            continue


def _ticks(fields: list[int], *, reaped: bool) -> int:
    ticks = fields[_UTIME - 1] + fields[_STIME - 1]
    return ticks + fields[_CUTIME - 1] + fields[_CSTIME - 1] if reaped else ticks


def session_cpu_seconds(session: int) -> float:
    """User + system CPU seconds of every process in `session`, reaped children included."""
    return (
        sum(
            _ticks(fields, reaped=True)
            for _, fields in _process_stats()
            if fields[_SESSION - 1] == session
        )
        / _TICKS
    )


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a server process, its live children and those it reaped.

    For servers whose workers are not in the server's session (each PostgreSQL backend
    starts a session of its own): the process tree, one level deep, as PostgreSQL and
    Redis run. 0.0 if the process is gone. A child's own children are not counted.
    """
    ticks = 0
    for process, fields in _process_stats():
        if process == pid:
            ticks += _ticks(fields, reaped=True)
        elif fields[_PARENT - 1] == pid:
            ticks += _ticks(fields, reaped=False)
    return ticks / _TICKS


def service_pids(env: dict[str, str]) -> dict[str, int]:
    """The pids of the disposable PostgreSQL primary and replica and Redis, by the names
    bench/run.py gives their figures.

    Read from their pid files under the directories `scripts/services.sh` wrote to its
    environment file. A server whose pid file is missing is left out.
    """
    files = {
        "postgresql_primary": Path(env.get("SERVICES_PRIMARY_DATA", "")) / "postmaster.pid",
        "postgresql_replica": Path(env.get("SERVICES_REPLICA_DATA", "")) / "postmaster.pid",
        "redis": Path(env.get("SERVICES_DIR", "")) / "run" / "redis.pid",
    }
    pids = {}
    for name, path in files.items():
        try:
            pids[name] = int(path.read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue
    return pids


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's children that have ended (wrk's runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
