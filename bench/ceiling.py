"""The ceiling: a bare WSGI app answering every request with the bytes of a real
`GET /api/v1/users/{id}/` response, served by the same gunicorn settings."""

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

BODY = Path(os.environ["BENCH_CEILING_BODY"]).read_bytes()
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """200 with the recorded body, whatever the request."""
    start_response("200 OK", HEADERS)
    return [BODY]
