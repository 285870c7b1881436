"""The repository's nginx config in front of gunicorn: slow clients do not hold workers.

Debian's nginx runs deploy/nginx/userservice.conf.template (its two placeholders filled
in, as the nginx image's template step does) on a loopback port of its own, in front of
gunicorn started by `make serve`. More clients than gunicorn has workers send their
headers and then trickle a sign-up body a byte at a time. While every one of those bodies
is still incomplete, a `/healthz` request through nginx must be answered; then the slow
bodies complete, and each gets the application's answer (not a timeout or a 502 from a
worker killed for being stuck). Nothing here measures time: the timeouts only stop a
broken run from hanging.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "nginx" / "userservice.conf.template"
WORKERS = 2
SLOW_CLIENTS = WORKERS + 2
# Generous bounds that only keep a broken run from hanging; nothing asserts on them.
STARTUP_GUARD = 300.0
REQUEST_GUARD = 120.0
BODY_PADDING = 4000  # bytes of JSON whitespace: the trickle never runs out on its own

pytestmark = pytest.mark.services


def nginx_binary() -> str:
    """Debian's nginx; `make test` installs it when run as root."""
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        unavailable("needs Debian's nginx: apt-get install nginx (`make test` does, as root)")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_health(port: int, process: subprocess.Popen[bytes]) -> None:
    """Poll /healthz until it answers; fail if the process exits or the guard runs out."""
    deadline = threading.Event()
    timer = threading.Timer(STARTUP_GUARD, deadline.set)
    timer.start()
    try:
        while not deadline.is_set():
            assert process.poll() is None, f"exited with {process.returncode}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                deadline.wait(0.2)
        pytest.fail(f"nothing answered /healthz on {port}")
    finally:
        timer.cancel()


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL it if it lingers."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture
def gunicorn(services: dict[str, str], tmp_path: Path) -> Iterator[int]:
    """gunicorn with production settings, started by `make serve` on a free port."""
    env_file = ROOT / f".services.nginx-test-{os.getpid()}.env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in services.items()))
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    env = {
        **os.environ,
        "WEB_CONCURRENCY": str(WORKERS),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    process = subprocess.Popen(
        [  # noqa: S607 (make from PATH, as CI runs it)
            "make",
            "--no-print-directory",
            "serve",
            f"PORT={port}",
            f"SERVE_ENV_FILE={env_file.name}",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_health(port, process)
        yield port
    finally:
        stop(process)
        log.close()
        env_file.unlink(missing_ok=True)


@pytest.fixture
def nginx(gunicorn: int, tmp_path: Path) -> Iterator[int]:
    """Debian's nginx with the repository's server config, on a free loopback port."""
    binary = nginx_binary()
    port = free_port()
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    server = TEMPLATE.read_text()
    server = server.replace("${NGINX_PORT}", f"127.0.0.1:{port}")
    server = server.replace("${USERSERVICE_UPSTREAM}", f"127.0.0.1:{gunicorn}")
    (prefix / "userservice.conf").write_text(server)
    temp_paths = "\n".join(
        f"  {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (prefix / "nginx.conf").write_text(
        # As root, the workers would otherwise switch to a user that cannot reach tmp_path.
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"worker_processes 1;\npid {prefix / 'nginx.pid'};\nerror_log {prefix / 'error.log'};\n"
        "events { worker_connections 256; }\n"
        f"http {{\n  access_log off;\n{temp_paths}\n  include {prefix / 'userservice.conf'};\n}}\n"
    )
    process = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=(prefix / "stderr.log").open("wb"),
        start_new_session=True,
    )
    try:
        wait_for_health(port, process)
        yield port
    finally:
        stop(process)


class SlowClient(threading.Thread):
    """Sends a sign-up's headers, then its body a byte at a time until released."""

    def __init__(self, port: int, release: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.release = release
        self.trickling = threading.Event()
        payload = {
            "email": f"slow-{uuid.uuid4().hex}@example.com",
            "password": "violet-harbour-lantern-42",
        }
        self.body = json.dumps(payload).encode() + b" " * BODY_PADDING
        self.answered_before_complete: bytes | None = None
        self.status_line = b""
        self.error: BaseException | None = None

    def run(self) -> None:
        """Trickle, then finish the body and read the answer."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=REQUEST_GUARD) as sock:
                sock.sendall(
                    b"POST /api/v1/users/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/json\r\nConnection: close\r\n"
                    + f"Content-Length: {len(self.body)}\r\n\r\n".encode()
                )
                sent = 0
                while not self.release.is_set() and sent < len(self.body) - 1:
                    sock.sendall(self.body[sent : sent + 1])
                    sent += 1
                    if sent == 3:
                        self.trickling.set()
                    self.release.wait(0.2)  # the trickle's pace, not a measurement
                self.answered_before_complete = self._pending(sock)
                sock.sendall(self.body[sent:])
                self.status_line = sock.makefile("rb").readline()
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc
            self.trickling.set()

    @staticmethod
    def _pending(sock: socket.socket) -> bytes:
        """What the server sent before the body was complete: b"" if nothing yet."""
        sock.setblocking(False)
        try:
            data = sock.recv(1024)
            return data if data else b"<connection closed>"
        except BlockingIOError:
            return b""
        finally:
            sock.setblocking(True)
            sock.settimeout(REQUEST_GUARD)


def test_slow_clients_do_not_delay_other_requests(nginx: int) -> None:
    release = threading.Event()
    clients = [SlowClient(nginx, release) for _ in range(SLOW_CLIENTS)]
    for client in clients:
        client.start()
    try:
        for client in clients:
            assert client.trickling.wait(REQUEST_GUARD), "a slow client never started"
            assert client.error is None, client.error

        # Every slow body is incomplete now, and stays so until released below.
        with urllib.request.urlopen(
            f"http://127.0.0.1:{nginx}/healthz", timeout=REQUEST_GUARD
        ) as r:
            assert r.status == 200
        assert all(client.is_alive() for client in clients), "a slow body ended early"
    finally:
        release.set()
        for client in clients:
            client.join(REQUEST_GUARD)

    for client in clients:
        assert client.error is None, client.error
        assert client.answered_before_complete == b"", client.answered_before_complete
        # The application's own answer: the sign-up went through once the body was whole.
        assert client.status_line.startswith(b"HTTP/1.1 201"), client.status_line


def test_the_public_side_does_not_route_readiness_or_metrics(nginx: int) -> None:
    for path in ("/readyz", "/metrics"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{nginx}{path}", timeout=REQUEST_GUARD)
        assert refused.value.code == 404
