"""Test-only WSGI entry point: the real Django application, plus `/test/slow`, a request
that holds until the test releases it. Production never loads this module."""

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from config.wsgi import application as django_application

GATE = Path(os.environ.get("SLOW_GATE_DIR", "/nonexistent"))


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Serve `/test/slow` by waiting for the test's release file; everything else is Django."""
    if environ.get("PATH_INFO") != "/test/slow":
        return django_application(environ, start_response)
    (GATE / "started").touch()
    deadline = time.monotonic() + 60
    while not (GATE / "release").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never released the slow request")
        time.sleep(0.01)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"slow request done"]
