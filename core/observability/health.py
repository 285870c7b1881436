"""Health endpoints for the orchestrator.

`/healthz` (liveness) answers without touching any dependency, so a slow database never
gets a healthy process restarted. `/readyz` (readiness) checks each configured dependency
with a short deadline: the primary database decides readiness (503 when it is down); a
down replica, Redis or broker only makes the answer "degraded", because the service
still works without them (reads fall back to the primary, the cache to the database,
events wait in the outbox).

Written here rather than with django-health-check, the ecosystem's usual choice: its view
has two answers, 200 or 500 when a check marked critical fails, and a non-critical
failure leaves a 200 with no overall state, so it cannot say "degraded" for the probes,
dashboards and `make smoke` that read it; its 500 is also the status this API keeps for
its own bugs (503 is what takes an instance out of rotation here), its body is not the
API's error shape, and its database check goes through Django's connection, which waits
out the pool's timeout where each probe here has one short overall deadline.
"""

import math
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial, wraps
from typing import Any

import environ
import psycopg
import redis
from django.conf import settings
from django.http import HttpRequest, JsonResponse

from core.db.postgres import probe_conninfo
from core.http.exceptions import error_body, error_response
from core.messaging.broker_probe import broker_ping
from core.observability.metrics import may_scrape

# libpq ignores connect timeouts under 2 seconds; the overall deadline below is shorter.
_POSTGRES_MIN_CONNECT_TIMEOUT = 2


def _get_only(view: Callable[[HttpRequest], JsonResponse]) -> Callable[[HttpRequest], JsonResponse]:
    """Like Django's require_GET, but the 405 has the API's JSON error shape."""

    @wraps(view)
    def wrapper(request: HttpRequest) -> JsonResponse:
        if request.method not in ("GET", "HEAD"):
            response = error_response(
                status=405, code="method_not_allowed", message="Only GET is allowed."
            )
            response["Allow"] = "GET, HEAD"
            return response
        return view(request)

    return wrapper


@_get_only
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process is up and serving requests."""
    return JsonResponse({"status": "ok"})


@dataclass(frozen=True)
class Check:
    """One dependency probe: `critical` ones decide readiness, the others only degrade it."""

    name: str
    critical: bool
    probe: Callable[[float], None]


def check_database(database: dict[str, Any], timeout: float) -> None:
    """Open a fresh connection to one database and run `SELECT 1`.

    PostgreSQL is reached outside Django's pool on purpose: the pool would wait its own
    (longer) timeout for a connection, and a probe must tell about the server itself.
    """
    # By suffix: the ENGINE may be a wrapper of Django's backend (django-prometheus's).
    if database["ENGINE"].endswith(".postgresql"):
        conninfo = probe_conninfo(
            database,
            connect_timeout=max(_POSTGRES_MIN_CONNECT_TIMEOUT, math.ceil(timeout)),
            statement_timeout=timeout,
        )
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute("SELECT 1")
        return
    if database["ENGINE"].endswith(".sqlite3"):
        with sqlite3.connect(str(database["NAME"]), timeout=timeout, uri=True) as connection:
            connection.execute("SELECT 1")
        return
    raise ValueError(f"no readiness check for {database['ENGINE']}")


def check_redis(url: str, timeout: float) -> None:
    """PING Redis over a new connection with short socket timeouts."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        if not client.ping():
            raise ConnectionError("Redis did not answer PING")
    finally:
        client.close()


def check_broker(url: str, timeout: float) -> None:
    """Connect to the Celery broker (Redis or RabbitMQ) once, without retrying."""
    broker_ping(url=url, timeout=timeout)


def configured_checks() -> list[Check]:
    """The checks that apply to this deployment's settings, primary first."""
    primary = partial(check_database, settings.DATABASES["default"])
    checks = [Check("database", critical=True, probe=primary)]
    for index, url in enumerate(settings.DATABASE_REPLICA_URLS):
        replica = partial(check_database, environ.Env.db_url_config(url))
        checks.append(Check(f"replica_{index}", critical=False, probe=replica))
    if settings.REDIS_URL:
        cache = partial(check_redis, settings.REDIS_URL)
        checks.append(Check("redis", critical=False, probe=cache))
    if settings.CELERY_BROKER_URL:
        broker = partial(check_broker, settings.CELERY_BROKER_URL)
        checks.append(Check("broker", critical=False, probe=broker))
    return checks


def _run_one(check: Check, timeout: float) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        check.probe(timeout)
    except Exception as error:  # any failure of a dependency means it is down
        # The exception's type only: messages can carry host names or credentials.
        status, detail = "down", {"error": type(error).__name__}
    else:
        status, detail = "ok", {}
    return {"status": status, "latency_ms": _ms(time.perf_counter() - started), **detail}


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def run_checks(checks: list[Check], timeout: float) -> dict[str, dict[str, Any]]:
    """Run every check concurrently; one that has not answered within `timeout` is down.

    A hung check's thread is left to finish on its driver's own timeout rather than
    delay the answer; each driver above is given one, so such threads do not pile up.
    """
    executor = ThreadPoolExecutor(max_workers=max(1, len(checks)), thread_name_prefix="readyz")
    futures = {check.name: executor.submit(_run_one, check, timeout) for check in checks}
    wait(futures.values(), timeout=timeout)
    executor.shutdown(wait=False, cancel_futures=True)
    return {
        name: future.result()
        if future.done()
        else {"status": "down", "latency_ms": _ms(timeout), "error": "timeout"}
        for name, future in futures.items()
    }


@_get_only
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 "ok" or "degraded" while the primary answers, else 503.

    Which dependency is down, how slow each is and its error text are for operators
    only (the clients /metrics serves); anyone else gets the status alone, which is all a
    probe reads.
    """
    checks = configured_checks()
    results = run_checks(checks, settings.HEALTH_CHECK_TIMEOUT)
    critical_down = [c.name for c in checks if c.critical and results[c.name]["status"] != "ok"]
    if critical_down:
        body = error_body(
            code="not_ready", message=f"Not ready: {', '.join(critical_down)} unreachable."
        )
        if not may_scrape(request):
            body = error_body(code="not_ready", message="Not ready.")
            return JsonResponse({**body, "status": "unavailable"}, status=503)
        return JsonResponse({**body, "status": "unavailable", "checks": results}, status=503)
    degraded = any(result["status"] != "ok" for result in results.values())
    status = "degraded" if degraded else "ok"
    if not may_scrape(request):
        return JsonResponse({"status": status})
    return JsonResponse({"status": status, "checks": results})
