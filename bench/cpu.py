"""CPU time of a process group, read from the processes' own accounting in /proc.

A scenario's CPU cost is the difference of two readings: every live process in the group
(the gunicorn master and its workers; the Celery worker and its pool children) counts its
user and system time, and each parent also counts the time of children it has reaped, so
a worker recycled mid-scenario is not lost.
"""

import os
import resource
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def session_cpu_seconds(session: int) -> float:
    """User + system CPU seconds of every process in `session`, reaped children included."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name (field 2) may hold spaces and parentheses: split after it.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # Fields 6 (session) and 14-17 (utime, stime, cutime, cstime), counted from 1.
        if int(fields[6 - 3]) == session:
            ticks += sum(int(value) for value in fields[14 - 3 : 18 - 3])
    return ticks / _TICKS


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a server process, its live children and those it reaped.

    For servers whose workers are not in the server's session (each PostgreSQL backend
    starts a session of its own): the process tree, one level deep, as PostgreSQL and
    Redis run. 0.0 if the process is gone.
    """
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            own = int(stat.parent.name) == pid
        except (OSError, IndexError, ValueError):
            continue
        # Field 4 is the parent's pid. A child's own children are not counted.
        if own:
            ticks += sum(int(value) for value in fields[14 - 3 : 18 - 3])
        elif int(fields[4 - 3]) == pid:
            ticks += sum(int(value) for value in fields[14 - 3 : 16 - 3])
    return ticks / _TICKS


def service_pids(env: dict[str, str]) -> dict[str, list[int]]:
    """The pids of the disposable PostgreSQL servers (primary, replica) and Redis.

    Read from their pid files under the directories `scripts/services.sh` wrote to its
    environment file. A server whose pid file is missing is left out.
    """
    files = {
        "PostgreSQL primary": [Path(env.get("SERVICES_PRIMARY_DATA", "")) / "postmaster.pid"],
        "PostgreSQL replica": [Path(env.get("SERVICES_REPLICA_DATA", "")) / "postmaster.pid"],
        "Redis": [Path(env.get("SERVICES_DIR", "")) / "run" / "redis.pid"],
    }
    pids: dict[str, list[int]] = {}
    for name, paths in files.items():
        for path in paths:
            try:
                pids.setdefault(name, []).append(int(path.read_text().split()[0]))
            except (OSError, IndexError, ValueError):
                continue
    return pids


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's children that have ended (wrk's runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
