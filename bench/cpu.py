"""CPU time of a process group, read from the processes' own accounting in /proc.

A scenario's CPU cost is the difference of two readings: every live process in the group
(the gunicorn master and its workers; the Celery worker and its pool children) counts its
user and system time, and each parent also counts the time of children it has reaped, so
a worker recycled mid-scenario is not lost.
"""

import os
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
