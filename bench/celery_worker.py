"""The Celery worker (every queue) and beat, as `make worker` / `make beat` start them,
each in its own session and stopped with it when the block ends."""

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from bench.processes import BIN, ROOT


@contextlib.contextmanager
def _session(command: list[str], env: dict[str, str], logfile: IO[str]) -> Iterator[int]:
    """A child in its own session (its id yielded); SIGTERM to the session on exit."""
    child = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield child.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


@contextlib.contextmanager
def worker_and_beat(env: dict[str, str], work: Path, logfile: IO[str]) -> Iterator[int]:
    """Worker (WORKER_QUEUES, WORKER_POOL, WORKER_CONCURRENCY as `make worker`) and beat.

    Yields the worker's session id (bench.cpu reads its CPU time). The worker writes its
    metrics to a directory of its own under `work`.
    """
    metrics = work / "worker-metrics"
    metrics.mkdir(exist_ok=True)
    celery = str(BIN / "celery")
    queues = os.environ.get("WORKER_QUEUES", "events,webhooks,housekeeping")
    concurrency = os.environ.get("WORKER_CONCURRENCY", "2")
    pool = os.environ.get("WORKER_POOL", "prefork")
    worker = [celery, "-A", "config", "worker", "-Q", queues, "-P", pool, "-c", concurrency]
    beat = [celery, "-A", "config", "beat", "-s", str(work / "celerybeat-schedule")]
    worker_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    with _session(worker, worker_env, logfile) as session, _session(beat, env, logfile):
        yield session
