"""A local webhook endpoint for the chaos run: answers 200 and counts what it got.

Each POST's `X-Webhook-Id` (the event id) is counted, with when it first arrived, and its
signature checked with the subscription's secret as a real receiver would
(events.signing.verify).
"""

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from events.signing import SIGNATURE_HEADER, verify


class Receiver:
    """A ThreadingHTTPServer on 127.0.0.1:`port`, in a background thread."""

    def __init__(self, port: int) -> None:
        self.secret = ""
        self.ids: Counter[str] = Counter()
        self.first_arrival: dict[str, float] = {}
        self.bad_signatures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                valid = verify(
                    secret=receiver.secret,
                    header=self.headers.get(SIGNATURE_HEADER, ""),
                    body=body,
                    now=int(time.time()),
                )
                webhook_id = self.headers.get("X-Webhook-Id", "")
                with receiver.lock:
                    receiver.ids[webhook_id] += 1
                    receiver.first_arrival.setdefault(webhook_id, time.monotonic())
                    receiver.bad_signatures += not valid
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def counts(self) -> Counter[str]:
        """Requests received per event id so far."""
        with self.lock:
            return Counter(self.ids)

    def first_arrivals(self, *, epoch: float) -> dict[str, float]:
        """When each event id first arrived, in seconds since `epoch` (monotonic)."""
        with self.lock:
            return {webhook_id: at - epoch for webhook_id, at in self.first_arrival.items()}
