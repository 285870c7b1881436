"""Process helpers shared by the load harnesses (bench/run.py, chaos/): services, gunicorn.

Each harness starts its own disposable services (scripts/services.sh) and serves the app
with gunicorn and config/gunicorn.py, as `make serve` does, on loopback; everything it
started is stopped when the `with` block ends, failure or not.
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
SERVICES_SCRIPT = ["bash", str(ROOT / "scripts" / "services.sh")]


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as scripts/services.sh writes them (values may be shell-quoted)."""
    values = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        values[key] = value.strip("'")
    return values


def services_env(name: str, port_base: str, env_file: Path) -> dict[str, str]:
    """The environment that points scripts/services.sh at one instance.

    Without the SERVICES_DIR of a `.services.env` sourced into the caller's shell: the
    script would take that other instance's directory for this one's, and stop it.
    """
    inherited = {key: value for key, value in os.environ.items() if key != "SERVICES_DIR"}
    return {
        **inherited,
        "SERVICES_NAME": name,
        "SERVICES_PORT_BASE": port_base,
        "SERVICES_ENV_FILE": str(env_file),
    }


@contextlib.contextmanager
def disposable_services(name: str, port_base: str, env_file: Path) -> Iterator[dict[str, str]]:
    """A PostgreSQL primary + replica and Redis instance of our own, removed afterwards.

    Yields the settings the script wrote (DATABASE_URL, REDIS_URL, PG_BINDIR, ...).
    """
    env = services_env(name, port_base, env_file)
    try:
        subprocess.run([*SERVICES_SCRIPT, "up"], env=env, check=True, stdout=subprocess.DEVNULL)
        yield read_env_file(env_file)
    finally:
        subprocess.run([*SERVICES_SCRIPT, "down"], env=env, check=False, stdout=subprocess.DEVNULL)


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
def gunicorn(
    app: str, port: int, env: dict[str, str], logfile: IO[str]
) -> Iterator[subprocess.Popen[bytes]]:
    """gunicorn with config/gunicorn.py (as `make serve`), stopped on exit.

    WEB_CONCURRENCY in `env` sets the workers (2 if unset).
    """
    process = subprocess.Popen(
        [str(BIN / "gunicorn"), "-c", "config/gunicorn.py", app],
        cwd=ROOT,
        env={
            **env,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "WEB_CONCURRENCY": env.get("WEB_CONCURRENCY", "2"),
        },
        stdout=logfile,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)
