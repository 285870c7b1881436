"""scripts/ecs_entrypoint.py: connection URLs composed at start, the task's IP allowed."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlsplit

import pytest

from userservice_infra.coverage import entrypoint


def test_compose_fills_and_quotes_every_field_and_removes_the_inputs() -> None:
    credentials = {"username": "userservice", "password": "p@ss:w/rd?#%", "port": 5432}
    environ = {
        "DATABASE_URL_TEMPLATE": "postgres://{username}:{password}@db.internal:5432/userservice",
        "DATABASE_URL_CREDENTIALS": json.dumps(credentials),
        "LOG_LEVEL": "INFO",
    }
    entrypoint.compose(environ)
    assert set(environ) == {"DATABASE_URL", "LOG_LEVEL"}
    url = urlsplit(environ["DATABASE_URL"])
    assert (url.hostname, url.port, url.username) == ("db.internal", 5432, "userservice")
    assert url.password == "p%40ss%3Aw%2Frd%3F%23%25"


def test_compose_makes_every_replica_url() -> None:
    environ = {
        "DATABASE_REPLICA_URLS_TEMPLATE": "postgres://{password}@a/db,postgres://{password}@b/db",
        "DATABASE_REPLICA_URLS_CREDENTIALS": json.dumps({"password": "s"}),
    }
    entrypoint.compose(environ)
    assert environ == {"DATABASE_REPLICA_URLS": "postgres://s@a/db,postgres://s@b/db"}


def test_compose_leaves_a_setting_given_directly() -> None:
    environ = {"REDIS_URL": "redis://localhost:6379/0"}
    entrypoint.compose(environ)
    assert environ == {"REDIS_URL": "redis://localhost:6379/0"}


def test_compose_fails_without_credentials() -> None:
    with pytest.raises(KeyError):
        entrypoint.compose({"REDIS_URL_TEMPLATE": "rediss://:{password}@cache:6379/0"})


@pytest.fixture
def metadata_endpoint() -> Iterator[str]:
    """A stand-in for the ECS task metadata endpoint, on loopback."""
    task = {"Containers": [{"Networks": [{"IPv4Addresses": ["10.40.17.9"]}]}]}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(task if self.path == "/v4/abc/task" else {}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v4/abc"
    server.shutdown()
    thread.join()


def test_allow_task_ip_appends_the_task_address(metadata_endpoint: str) -> None:
    environ = {
        "DJANGO_ALLOWED_HOSTS": "users.example.com,localhost",
        "ECS_CONTAINER_METADATA_URI_V4": metadata_endpoint,
    }
    entrypoint.allow_task_ip(environ)
    assert environ["DJANGO_ALLOWED_HOSTS"] == "users.example.com,localhost,10.40.17.9"


def test_allow_task_ip_is_a_no_op_off_ecs() -> None:
    environ = {"DJANGO_ALLOWED_HOSTS": "localhost"}
    entrypoint.allow_task_ip(environ)
    assert environ == {"DJANGO_ALLOWED_HOSTS": "localhost"}


@pytest.mark.parametrize("argv", [[], ["--allow-task-ip"], ["--"], ["gunicorn"]])
def test_main_refuses_a_missing_command(argv: list[str]) -> None:
    assert entrypoint.main(argv) == 2
