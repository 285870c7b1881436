"""CPU, memory and database connection pools of every web and worker process.

Under gunicorn and the prefork Celery pool a scrape reads only what the processes wrote to
their multiprocess files (core/observability/gunicorn_hooks.py,
core/observability/celery_metrics.py); prometheus_client's process collector, which reads
the scraping process's own /proc entry, is not part of it. So each process samples itself on
a timer thread and writes "liveall" gauges: one series per live process (prometheus_client
adds its `pid` label), dropped when the process exits, so both the sum over processes and
the worst one can be read. Outside multiprocess mode the same gauges are plain gauges of the
one process.

Pools are only looked at, never opened: a process that has not touched a database reports
no pool for it.
"""

import logging
import os
import threading
import time

from django.conf import settings
from prometheus_client import Counter, Gauge

from core.db.backends.postgresql.base import DatabaseWrapper

logger = logging.getLogger(__name__)

CPU_SECONDS = Gauge(
    "userservice_process_cpu_seconds",
    "CPU time (user and system) this process has used since it started; rate() is cores.",
    ["process"],
    multiprocess_mode="liveall",
)
RESIDENT_MEMORY = Gauge(
    "userservice_process_resident_memory_bytes",
    "Resident memory of this process.",
    ["process"],
    multiprocess_mode="liveall",
)
POOL_CONNECTIONS = Gauge(
    "userservice_db_pool_connections",
    "Connections in this process's pool for a database, by state (in_use, idle).",
    ["database", "state"],
    multiprocess_mode="liveall",
)
POOL_MAX_CONNECTIONS = Gauge(
    "userservice_db_pool_max_connections",
    "The most connections this process's pool for a database may open.",
    ["database"],
    multiprocess_mode="liveall",
)
POOL_WAITING = Gauge(
    "userservice_db_pool_requests_waiting",
    "Borrowers waiting now for a connection from this process's pool.",
    ["database"],
    multiprocess_mode="liveall",
)
POOL_TIMEOUTS = Counter(
    "userservice_db_pool_timeouts",
    "Borrowers that gave up waiting for a pooled connection (the pool was exhausted or "
    "could not connect).",
    ["database"],
)

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_lock = threading.Lock()
# The pid that started sampling: a forked child inherits the flag but not the thread.
_sampling_pid: int | None = None
# Per database: the pool's cumulative error count at the last sample.
_pool_errors_seen: dict[str, int] = {}


def start_sampling(*, process: str) -> bool:
    """Sample this process now and then every METRICS_SAMPLE_SECONDS, on a daemon thread.

    `process` names the role ("web", "worker"). Once per process; returns whether this
    call started it (False when already sampling or when METRICS_SAMPLE_SECONDS is 0).
    """
    global _sampling_pid
    interval = settings.METRICS_SAMPLE_SECONDS
    with _lock:
        if interval <= 0 or _sampling_pid == os.getpid():
            return False
        _sampling_pid = os.getpid()
        _pool_errors_seen.clear()
    sample(process=process)
    thread = threading.Thread(
        target=_sample_forever, args=(process, interval), name="resource-metrics", daemon=True
    )
    thread.start()
    return True


def sample(*, process: str) -> None:
    """Record this process's CPU time, resident memory and connection pools once."""
    cpu = os.times()
    CPU_SECONDS.labels(process).set(cpu.user + cpu.system)
    resident = _resident_bytes()
    if resident is not None:
        RESIDENT_MEMORY.labels(process).set(resident)
    for alias, pool in DatabaseWrapper.open_pools().items():
        stats = pool.get_stats()
        size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
        POOL_CONNECTIONS.labels(alias, "in_use").set(size - idle)
        POOL_CONNECTIONS.labels(alias, "idle").set(idle)
        POOL_MAX_CONNECTIONS.labels(alias).set(pool.max_size)
        POOL_WAITING.labels(alias).set(stats.get("requests_waiting", 0))
        errors = stats.get("requests_errors", 0)
        # A replaced pool (core/db/backends/postgresql) starts counting from zero again.
        new_errors = errors - _pool_errors_seen.get(alias, 0)
        POOL_TIMEOUTS.labels(alias).inc(new_errors if new_errors >= 0 else errors)
        _pool_errors_seen[alias] = errors


def _sample_forever(process: str, interval: float) -> None:
    while True:
        time.sleep(interval)
        try:
            sample(process=process)
        except Exception:
            # A failed sample must not end the thread: the next one may well succeed.
            logger.exception("resource metrics sample failed")


def _resident_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None
