"""CPU per request of the API's reads, in-process: Django's WSGI handler called directly.

Measures, with this process's CPU clock, the best of BENCH_READ_RUNS runs (7) of N
requests (argv[1], 1000) each, for: a warm `GET /users/{id}/` (token and user cached),
the same with a current If-None-Match (a 304), `GET /users/me/`, and the staff list's
first page of 50 (N/10 requests). As in a gunicorn worker, metrics go to files in a
PROMETHEUS_MULTIPROC_DIR (a temporary one unless set) and the request log line is
rendered (to stderr, here /dev/null). With BENCH_PROFILE=1, a cProfile (CPU time) of
one run of each follows: own time by package, then functions sorted by
BENCH_PROFILE_SORT (tottime by default; BENCH_PROFILE_LINES, 25).

Usage, against `make services-up`'s services (or any in .services.env):
  set -a; . ./.services.env; set +a
  DJANGO_DEBUG=false DJANGO_SECURE_SSL_REDIRECT=false .venv/bin/python -m bench.read_cpu 1000

It creates its own users (a staff member, a reader with a token, 50 more) and leaves them.
"""

import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

# Before prometheus_client is imported (by Django's setup): file-backed, as under gunicorn.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="read-cpu-metrics-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Counted, never refused, as in bench.run.
os.environ.setdefault("THROTTLE_USER_RATE", "1000000/second")

import django

django.setup()

from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from knox.models import AuthToken  # noqa: E402

from users import services as users_services  # noqa: E402

Environ = dict[str, Any]


def _environ(path: str, token: str, **headers: str) -> Callable[[], Environ]:
    base = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_ACCEPT": "application/json",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        **headers,
    }
    return lambda: {**base, "wsgi.input": io.BytesIO(b"")}


def _run(app: WSGIHandler, environ: Callable[[], Environ], count: int, status: str) -> float:
    """ms of CPU per request over `count` requests; each must answer `status`."""

    def start_response(got: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if not got.startswith(status):
            print(f"{environ()['PATH_INFO']}: {got}, expected {status}", flush=True)
            raise SystemExit(1)

    started = time.process_time()
    for _ in range(count):
        body = app(environ(), start_response)
        b"".join(body)
        body.close()
    return (time.process_time() - started) * 1000 / count


def _print_by_package(stats: pstats.Stats) -> None:
    """Own CPU time (tottime) summed by top-level package: where the time goes."""
    totals: dict[str, float] = {}
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if "site-packages/" in filename:
            package = filename.split("site-packages/", 1)[1].split("/", 1)[0]
        elif filename.startswith(os.getcwd()):
            package = "project: " + filename[len(os.getcwd()) + 1 :].split("/", 1)[0]
        else:
            package = "stdlib and builtins"
        totals[package] = totals.get(package, 0.0) + tottime
    whole = sum(totals.values()) or 1.0
    for package, seconds in sorted(totals.items(), key=lambda item: -item[1])[:15]:
        print(f"  {package:40s} {100 * seconds / whole:5.1f}%")


def main() -> None:
    """Print ms of CPU per request for each read, then the profiles if asked."""
    # The request log lines are rendered and written, as in a worker, to /dev/null.
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    runs = int(os.environ.get("BENCH_READ_RUNS", "7"))
    tag = uuid.uuid4().hex[:8]
    staff = users_services.user_create(
        email=f"read-cpu-staff-{tag}@example.com", password=None, is_staff=True
    )
    reader = users_services.user_create(email=f"read-cpu-{tag}@example.com", password=None)
    for number in range(50):
        users_services.user_create(email=f"read-cpu-{tag}-{number}@example.com", password=None)
    _, reader_token = AuthToken.objects.create(user=reader)
    _, staff_token = AuthToken.objects.create(user=staff)
    app = WSGIHandler()
    detail = f"/api/v1/users/{reader.pk}/"
    warm_up = _environ(detail, reader_token)
    etag = ""

    def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        nonlocal etag
        etag = dict(headers).get("ETag", "")

    for _ in range(3):
        b"".join(app(warm_up(), capture))
    reads = [
        ("GET /users/{id}/ warm", warm_up, count, "200"),
        (
            "GET /users/{id}/ If-None-Match (304)",
            _environ(detail, reader_token, HTTP_IF_NONE_MATCH=etag),
            count,
            "304",
        ),
        ("GET /users/me/ warm", _environ("/api/v1/users/me/", reader_token), count, "200"),
        (
            "GET /users/ first page (50)",
            _environ("/api/v1/users/", staff_token),
            count // 10,
            "200",
        ),
    ]
    for name, environ, requests, status in reads:
        _run(app, environ, max(requests // 10, 1), status)
        best = min(_run(app, environ, requests, status) for _ in range(runs))
        print(f"{name:40s} {best:6.3f} ms CPU/request (best of {runs} x {requests})")
    if os.environ.get("BENCH_PROFILE") != "1":
        return
    sort = os.environ.get("BENCH_PROFILE_SORT", "tottime")
    lines = int(os.environ.get("BENCH_PROFILE_LINES", "25"))
    for name, environ, requests, status in reads:
        # CPU time, not wall time: waits on Redis and PostgreSQL are not this process's.
        profile = cProfile.Profile(time.process_time)
        profile.enable()
        _run(app, environ, requests, status)
        profile.disable()
        print(f"\n--- {name}: {requests} requests")
        stats = pstats.Stats(profile)
        _print_by_package(stats)
        stats.sort_stats(sort).print_stats(lines)


if __name__ == "__main__":
    main()
