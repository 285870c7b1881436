"""config/gunicorn.py under a real gunicorn: SIGTERM during a slow request lets it finish
while new connections are refused, access log lines are JSON, and the worker class is a
setting."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def poll(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Bounded polling: as fast as the condition, never longer than `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def answers(port: int, path: str = "/healthz") -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", path, headers={"Host": "localhost"})
        return connection.getresponse().status == 200
    except OSError:
        return False


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture
def gunicorn(tmp_path, request) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    """gunicorn on config/gunicorn.py; a test's indirect parameter adds variables."""
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "GUNICORN_ACCESS_LOG": "-",
        "GUNICORN_GRACEFUL_TIMEOUT": "30",
        "SLOW_GATE_DIR": str(tmp_path),
        **getattr(request, "param", {}),
    }
    with log.open("w") as output:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "config/gunicorn.py",
                "config.tests.slow_wsgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        poll(lambda: answers(port) or server.poll() is not None, 60, "gunicorn to serve")
        assert server.poll() is None, log.read_text()
        yield server, port, log
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=30)


def test_sigterm_finishes_the_slow_request_and_refuses_new_connections(gunicorn, tmp_path):
    server, port, log = gunicorn
    result: dict[str, object] = {}

    def slow_request() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("GET", "/test/slow", headers={"Host": "localhost"})
        response = connection.getresponse()
        result.update(status=response.status, body=response.read())

    client = threading.Thread(target=slow_request)
    client.start()
    poll((tmp_path / "started").exists, 30, "the slow request to reach the app")

    server.send_signal(signal.SIGTERM)
    poll(lambda: refuses(port), 20, "new connections to be refused")
    assert client.is_alive(), "the slow request ended before it was released"

    (tmp_path / "release").touch()
    client.join(timeout=60)
    assert result == {"status": 200, "body": b"slow request done"}
    assert server.wait(timeout=60) == 0, log.read_text()

    access = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    slow = [line for line in access if line["path"] == "/test/slow"]
    assert len(slow) == 1, log.read_text()
    assert slow[0]["status"] == 200
    assert slow[0]["method"] == "GET"
    assert slow[0]["logger"] == "gunicorn.access"


def test_the_images_healthcheck_command_follows_the_server(gunicorn):
    server, port, log = gunicorn
    env = {**os.environ, "PORT": str(port)}

    def healthcheck() -> int:
        command = [sys.executable, "scripts/healthcheck.py"]
        return subprocess.run(command, cwd=ROOT, env=env, timeout=30, check=False).returncode

    assert healthcheck() == 0
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=60) == 0, log.read_text()
    assert healthcheck() == 1


def test_access_lines_are_json_even_for_hostile_headers_and_omit_query_strings(gunicorn):
    server, port, log = gunicorn
    agent = 'evil "agent" \\ {"status": 999}'
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(
        "GET",
        "/healthz?token=query-secret",
        headers={"Host": "localhost", "User-Agent": agent, "X-Request-ID": "req-123"},
    )
    assert connection.getresponse().status == 200
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=60) == 0, log.read_text()

    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    # The application's own request line carries the id too; this test is about gunicorn's.
    [line] = [
        line
        for line in lines
        if line.get("request_id") == "req-123" and line.get("logger") == "gunicorn.access"
    ]
    assert line["user_agent"] == agent
    assert (line["path"], line["status"]) == ("/healthz", 200)
    assert isinstance(line["duration_ms"], float)
    assert "query-secret" not in text


@pytest.mark.parametrize(
    ("gunicorn", "keeps_alive"),
    [
        ({}, False),
        ({"GUNICORN_WORKER_CLASS": "gthread", "GUNICORN_THREADS": "2"}, True),
    ],
    indirect=["gunicorn"],
    ids=["sync", "gthread"],
)
def test_the_worker_class_decides_whether_connections_stay_open(gunicorn, keeps_alive):
    _, port, _ = gunicorn
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/healthz", headers={"Host": "localhost"})
    response = connection.getresponse()
    response.read()

    assert response.status == 200
    assert (response.getheader("Connection", "").lower() == "close") is not keeps_alive
