"""Fixtures of the events tests: in-process Celery, a real worker process, a webhook receiver.

The real-worker tests run `celery -A config worker` (with embedded beat, for the sweeper)
as a subprocess against the same PostgreSQL test database and the test Redis as broker,
so nothing about delivery is simulated: messages cross a real broker, tasks are acked
late, a killed worker's messages come back through Redis's visibility timeout.
"""

import email
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from django.db import connection

from config.celery import app as celery_app
from conftest import NEEDS_SERVICES, unavailable

ROOT = Path(__file__).resolve().parents[2]

# Short, test-only timings for the worker (see docs/settings.md for each variable). The
# visibility timeout stays above the task time limit plus the longest retry countdown,
# as config/settings.py requires.
WORKER_SETTINGS = {
    "CELERY_VISIBILITY_TIMEOUT": "6",
    "CELERY_UNACKED_RESTORE_INTERVAL": "1",
    "CELERY_TASK_TIME_LIMIT": "4",
    "EVENTS_SWEEP_INTERVAL_SECONDS": "0.5",
    "EVENTS_SWEEP_AFTER_SECONDS": "1",
    "EVENTS_RETRY_BACKOFF_SECONDS": "0.2",
    "EVENTS_RETRY_BACKOFF_MAX_SECONDS": "1.5",
    "WEBHOOK_RETRY_BACKOFF_SECONDS": "0.3",
    "WEBHOOK_TIMEOUT_SECONDS": "3",
    "WEBHOOK_MAX_ATTEMPTS": "5",
    "WEBHOOK_BREAKER_FAIL_MAX": "4",
    "WEBHOOK_BREAKER_RESET_SECONDS": "60",
    "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
}


def wait_for(check: Callable[[], Any], *, timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Worker:
    """A `celery worker -B` subprocess in its own process group."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "worker.log"
        self.starts = 0

    def start(self) -> None:
        """Start the worker and wait until it consumes."""
        self.starts += 1
        offset = self.log_size()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--beat",
                "--schedule",
                str(self.workdir / f"beat-schedule-{self.starts}"),
                "--queues",
                "events,webhooks,housekeeping",
                "--concurrency",
                "2",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--hostname",
                f"test{self.starts}@%h",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"the worker exited:\n{self.tail()}")
            return " ready." in self.log_since(offset)

        wait_for(ready, timeout=60, what="the worker to be ready")

    def kill(self) -> None:
        """SIGKILL the worker and its children at once, as a crashed host would."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, *, timeout: float) -> int:
        """SIGTERM the main process only, as Kubernetes signals a container; return its code.

        Fails the test if the worker, or any process it started, outlives `timeout`.
        """
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            pytest.fail(f"the worker ignored SIGTERM for {timeout}s:\n{self.tail()}")
        wait_for(lambda: not _group_alive(self.process), timeout=timeout, what="its pool to exit")
        return code

    def stop(self) -> None:
        """Warm shutdown; SIGKILL if it takes too long."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log_size(self) -> int:
        """Where the log ends now, for `log_since`."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int) -> str:
        """What the worker logged after `offset`."""
        with self.log_path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")

    def tail(self, lines: int = 60) -> str:
        """The end of the worker's log, for failure messages."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _group_alive(process: subprocess.Popen[bytes] | None) -> bool:
    assert process is not None
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def worker_env(
    tmp_path_factory: pytest.TempPathFactory, django_db_setup: None, django_db_blocker: Any
) -> dict[str, str]:
    """The worker's environment: the test database, the test broker, short timings."""
    broker_url = os.environ.get("CELERY_BROKER_URL", "")
    database_url = os.environ.get("DATABASE_URL", "")
    if not broker_url or not database_url.startswith("postgres"):
        unavailable(NEEDS_SERVICES)
    with django_db_blocker.unblock():
        test_database = connection.settings_dict["NAME"]
    workdir = tmp_path_factory.mktemp("worker")
    emails = workdir / "emails"
    emails.mkdir()
    # Messages left in the broker by earlier tests refer to rows that are gone.
    redis.Redis.from_url(broker_url).flushdb()
    env = {
        **os.environ,
        **WORKER_SETTINGS,
        "DATABASE_URL": f"{database_url.rsplit('/', 1)[0]}/{test_database}",
        # The worker reads what the test just wrote: the primary only.
        "DATABASE_REPLICA_URLS": "",
        "DATABASE_POOL_MAX_SIZE": "4",
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(emails),
        "PYTHONUNBUFFERED": "1",
    }
    return env


@pytest.fixture(scope="module")
def worker(
    worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    """A running worker shared by a module's tests (each test may kill and restart it)."""
    process = Worker(worker_env, tmp_path_factory.mktemp("worker-run"))
    process.start()
    yield process
    process.stop()


@pytest.fixture
def staff_login(client: Any) -> Any:
    """Django's test client, logged in to the admin as a superuser."""
    from users.tests.factories import UserFactory

    client.force_login(UserFactory.create(is_staff=True, is_superuser=True))
    return client


def sent_emails(env: dict[str, str], recipient: str) -> list[email.message.Message]:
    """Emails the worker's file backend wrote to `recipient`."""
    found = []
    for path in Path(env["EMAIL_FILE_PATH"]).glob("*.log"):
        for chunk in path.read_text().split("-" * 79):
            if chunk.strip():
                message = email.message_from_string(chunk.strip())
                if message["To"] == recipient:
                    found.append(message)
    return found


def broker_drained(broker_url: str) -> bool:
    """No message waits in the queues and none is being worked on (acks are late)."""
    client = redis.Redis.from_url(broker_url)
    queued = sum(client.llen(queue) for queue in ("events", "webhooks", "housekeeping"))
    return queued == 0 and client.hlen("unacked") == 0


@dataclass
class Received:
    """One request the receiver got."""

    at: float
    body: bytes
    headers: dict[str, str]
    status: int
    answered_at: float | None = None
    # The sender's (address, port): one TCP connection per distinct value.
    peer: tuple[str, int] = ("", 0)


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1 whose answers the test scripts.

    `statuses` are the answers to the first requests, in order; later ones get 200.
    With `hold_first`, the first request is kept unanswered until `release` is set.
    With `slow_first`, the first request is answered after that many seconds (sooner if
    `release` is set); if the sender hung up meanwhile, its status is 0, not accepted.
    """

    statuses: list[int] = field(default_factory=list)
    hold_first: bool = False
    slow_first: float = 0.0
    requests: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    @property
    def accepted(self) -> list[Received]:
        """The requests answered with a 2xx."""
        return [r for r in self.requests if 200 <= r.status < 300]

    def ids(self) -> list[str]:
        """Event ids of the accepted requests."""
        return [json.loads(r.body)["id"] for r in self.accepted]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local webhook receiver on an OS-assigned port."""
    state = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        # Keep-alive, as real receivers do: a sender may reuse its connection.
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                index = len(state.requests)
                status = state.statuses[index] if index < len(state.statuses) else 200
                held = state.hold_first and index == 0
                record = Received(
                    time.monotonic(), body, dict(self.headers), -1, peer=self.client_address
                )
                state.requests.append(record)
            if held:
                state.release.wait(timeout=30)
                # The sender is gone by now: this one never counts as accepted.
                status = 503
            elif state.slow_first and index == 0:
                state.release.wait(timeout=state.slow_first)
                if _hung_up(self.connection):
                    record.status = 0
                    record.answered_at = time.monotonic()
                    self.close_connection = True
                    return
            record.status = status
            record.answered_at = time.monotonic()
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


def _hung_up(sock: socket.socket) -> bool:
    # The sender sends nothing more before our answer: readable means closed or reset.
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def broker_down(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:
    """Point this process's Celery producer at a closed port; call the result to restore."""
    original = celery_app.conf.broker_url

    def point_at(url: str) -> None:
        # Celery reads CELERY_BROKER_URL from the environment before its configuration.
        monkeypatch.setenv("CELERY_BROKER_URL", url)
        # Celery caches its producer pool: drop the reference so the next publish builds
        # one for `url`. (kombu keeps each URL's pool; the original is reused on restore.)
        celery_app._pool = None
        celery_app.amqp._producer_pool = None
        celery_app.conf.broker_url = url

    point_at(f"redis://127.0.0.1:{closed_port()}/1")
    restored = False

    def restore() -> None:
        nonlocal restored
        if not restored:
            point_at(original)
            restored = True

    yield restore
    restore()
