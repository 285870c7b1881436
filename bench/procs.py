"""The processes a benchmark run starts, each stopped on exit (also on failure).

Disposable services (scripts/services.sh), gunicorn with config/gunicorn.py as
`make serve` runs it, the Celery worker and beat as `make worker` / `make beat` run them.
Every process gets its own session, so stopping it stops its children too.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STARTED = time.monotonic()


def log(message: str) -> None:
    """Progress on stderr; results go to stdout."""
    elapsed = int(time.monotonic() - STARTED)
    print(f"bench {elapsed // 60}:{elapsed % 60:02}: {message}", file=sys.stderr, flush=True)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as scripts/services.sh writes them (values may be shell-quoted)."""
    values = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        values[key] = value.strip("'")
    return values


@contextlib.contextmanager
def services(work: Path, port_base: str) -> Iterator[dict[str, str]]:
    """A disposable PostgreSQL primary + replica and Redis of our own, removed afterwards."""
    env = {
        **os.environ,
        "SERVICES_NAME": "bench",
        "SERVICES_PORT_BASE": port_base,
        "SERVICES_ENV_FILE": str(work / "services.env"),
    }
    script = ["bash", str(ROOT / "scripts" / "services.sh")]
    try:
        subprocess.run([*script, "up"], env=env, check=True, stdout=subprocess.DEVNULL)
        yield read_env_file(work / "services.env")
    finally:
        subprocess.run([*script, "down"], env=env, check=False, stdout=subprocess.DEVNULL)


def wait_http(url: str, seconds: float = 60) -> None:
    """Poll until the URL answers 200."""
    deadline = time.monotonic() + seconds
    while True:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=2) as response,  # noqa: S310 (loopback)
        ):
            if response.status == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer")
        time.sleep(0.2)


@contextlib.contextmanager
def process(command: list[str], env: dict[str, str], logfile: IO[str]) -> Iterator[int]:
    """A child in its own session; SIGTERM to the whole session on exit. Yields its pid."""
    child = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=logfile,
        stderr=subprocess.STDOUT,
        start_new_session=True,
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
def gunicorn(
    app: str, port: int, workers: str, env: dict[str, str], logfile: IO[str]
) -> Iterator[int]:
    """gunicorn with config/gunicorn.py (as `make serve`), once it answers. Yields its pid."""
    command = [str(BIN / "gunicorn"), "-c", "config/gunicorn.py", app]
    env = {**env, "HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": workers}
    with process(command, env, logfile) as pid:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield pid


@contextlib.contextmanager
def celery(env: dict[str, str], work: Path, logfile: IO[str]) -> Iterator[None]:
    """The Celery worker (queues events and webhooks) and beat, as `make worker`/`make beat`."""
    metrics = work / "worker-metrics"
    metrics.mkdir(exist_ok=True)
    celery_bin = str(BIN / "celery")
    queues = os.environ.get("WORKER_QUEUES", "events,webhooks")
    concurrency = os.environ.get("WORKER_CONCURRENCY", "2")
    worker = [celery_bin, "-A", "config", "worker", "-Q", queues, "-c", concurrency]
    beat = [celery_bin, "-A", "config", "beat", "-s", str(work / "celerybeat-schedule")]
    worker_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    with process(worker, worker_env, logfile), process(beat, env, logfile):
        yield


def children(pid: int) -> list[int]:
    """The direct children of a process (gunicorn's workers, for its master)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def resident_mb(pid: int) -> float:
    """VmRSS of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")
