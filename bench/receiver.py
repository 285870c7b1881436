"""The webhook receiver: a small threaded HTTP server that notes when each event arrives.

Registered as a webhook subscription by bench/seed.py. It answers 204 at once and keeps,
per event id (the `X-Webhook-Id` header; retries and duplicates keep the first arrival),
the wall-clock time the request reached it. bench/run.py subtracts each event's commit
time to get commit-to-webhook latency.
"""

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Arrivals:
    """Event id -> first arrival time (Unix seconds), shared with the server's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times: dict[str, float] = {}

    def note(self, event_id: str, at: float) -> None:
        """Keep the first arrival of an event."""
        with self._lock:
            self._times.setdefault(event_id, at)

    def get(self, event_id: str) -> float | None:
        """When the event first arrived, or None."""
        with self._lock:
            return self._times.get(event_id)


@contextlib.contextmanager
def receiver(port: int) -> Iterator[Arrivals]:
    """Serve on 127.0.0.1:port in a background thread until the block ends."""
    arrivals = Arrivals()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            at = time.time()
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            arrivals.note(self.headers.get("X-Webhook-Id", ""), at)
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
    database_url: str, arrivals: Arrivals, *, start: float, end: float, drain_seconds: float
) -> dict[str, float]:
    """Commit-to-webhook latency of the `user.updated` events committed in [start, end].

    The commit time is the outbox row's `created_at` (set inside the writing transaction,
    just before its commit; the same value the webhook body carries). Waits up to
    `drain_seconds` for the events still in flight. Returns the count of events, how many
    never arrived in time, and p50/p95/p99 in seconds of those that did.
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
    while any(arrivals.get(event_id) is None for event_id, _ in rows):
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    latencies = []
    for event_id, committed in rows:
        arrived = arrivals.get(event_id)
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
        "hook_p50_s": percentile(0.50),
        "hook_p95_s": percentile(0.95),
        "hook_p99_s": percentile(0.99),
    }
