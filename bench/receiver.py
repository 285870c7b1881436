"""The webhook receiver: a small threaded HTTP server that notes when each event arrives.

Registered by bench/seed.py as BENCH_SUBSCRIBERS webhook subscriptions, one path each
(/hook/0, /hook/1, ...). It answers 204 at once, keeping connections alive as real
receivers do, and keeps, per event id (the `X-Webhook-Id` header) and path, the
wall-clock time the request first reached it (retries and duplicates keep the first),
and how many requests came again for an event and path it already had.
bench/run.py subtracts each event's commit time from its last subscriber's arrival to
get commit-to-webhook latency.
"""

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Arrivals:
    """Event id -> path -> first arrival time (Unix seconds), shared with the server's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times: dict[str, dict[str, float]] = {}
        self._repeats: dict[str, int] = {}

    def note(self, event_id: str, path: str, at: float) -> None:
        """Keep the first arrival of an event at a path; count any later one."""
        with self._lock:
            paths = self._times.setdefault(event_id, {})
            if path in paths:
                self._repeats[event_id] = self._repeats.get(event_id, 0) + 1
            else:
                paths[path] = at

    def repeats(self, event_id: str) -> int:
        """How many requests for this event reached a path that already had it."""
        with self._lock:
            return self._repeats.get(event_id, 0)

    def get(self, event_id: str, subscribers: int = 1) -> float | None:
        """When the event had reached `subscribers` paths (the last first arrival), or None."""
        with self._lock:
            times = self._times.get(event_id, {})
            return max(times.values()) if len(times) >= subscribers else None


@contextlib.contextmanager
def receiver(port: int) -> Iterator[Arrivals]:
    """Serve on 127.0.0.1:port in a background thread until the block ends."""
    arrivals = Arrivals()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            at = time.time()
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            arrivals.note(self.headers.get("X-Webhook-Id", ""), self.path, at)
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield arrivals
    finally:
        server.shutdown()
        server.server_close()


def commit_to_webhook(
    database_url: str,
    arrivals: Arrivals,
    *,
    start: float,
    end: float,
    drain_seconds: float,
    subscribers: int = 1,
) -> dict[str, float]:
    """Commit-to-webhook latency of the `user.updated` events committed in [start, end].

    The commit time is the outbox row's `created_at` (set inside the writing transaction,
    just before its commit; the same value the webhook body carries); an event has arrived
    once every one of the `subscribers` has it. Waits up to `drain_seconds` for the events
    still in flight. Returns the count of events, how many never arrived in time, and
    p50/p95/p99 in seconds of those that did.
    """
    import psycopg

    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT id::text, extract(epoch FROM created_at)::float8 FROM events_outboxevent"
            " WHERE topic = 'user.updated'"
            " AND created_at BETWEEN to_timestamp(%s) AND to_timestamp(%s)",
            (start, end),
        ).fetchall()
    deadline = time.monotonic() + drain_seconds
    while any(arrivals.get(event_id, subscribers) is None for event_id, _ in rows):
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    latencies = []
    for event_id, committed in rows:
        arrived = arrivals.get(event_id, subscribers)
        if arrived is not None:
            latencies.append(arrived - committed)
    latencies.sort()

    def percentile(share: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(len(latencies) * share))]

    return {
        "events": float(len(rows)),
        "undelivered": float(len(rows) - len(latencies)),
        "duplicates": float(sum(arrivals.repeats(event_id) for event_id, _ in rows)),
        "hook_p50_s": percentile(0.50),
        "hook_p95_s": percentile(0.95),
        "hook_p99_s": percentile(0.99),
    }
