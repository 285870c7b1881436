"""Fixtures for users' tests: other app servers on the same database and Redis."""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]

Peer = Callable[[str], dict[str, Any]]


def faketime() -> str:
    """Debian's faketime (`make test` installs it when run as root)."""
    found = shutil.which("faketime")
    if found is None:
        unavailable("needs faketime to shift a server's clock: apt-get install faketime")
    return found


@pytest.fixture
def start_peer(services: dict[str, str]) -> Iterator[Callable[..., Peer]]:
    """Start another app server (users/tests/cache_peer.py) on the test database and
    Redis; `clock_offset` (e.g. "+5s") runs it under faketime. Returns its `ask`."""
    processes: list[subprocess.Popen[str]] = []

    def start(*, clock_offset: str = "", **extra_env: str) -> Peer:
        db = connection.settings_dict
        env = {
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PYTHONPATH": str(ROOT),
            "USER_LOCAL_CACHE_TTL": str(settings.USER_LOCAL_CACHE_TTL),
            # The peer reads the test database on the primary; its answers are the only
            # lines on its stdout.
            "DATABASE_REPLICA_URLS": "",
            "LOG_LEVEL": "CRITICAL",
            **extra_env,
        }
        command = [sys.executable, str(ROOT / "users" / "tests" / "cache_peer.py")]
        if clock_offset:
            command = [faketime(), "-f", clock_offset, *command]
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        processes.append(process)
        assert process.stdin is not None
        assert process.stdout is not None
        assert json.loads(process.stdout.readline()) == {"ready": True}

        def ask(command: str) -> dict[str, Any]:
            assert process.stdin is not None
            assert process.stdout is not None
            process.stdin.write(command + "\n")
            process.stdin.flush()
            return dict(json.loads(process.stdout.readline()))

        return ask

    yield start
    for process in processes:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
