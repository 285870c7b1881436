"""A webhook endpoint for smoke tests: checks each delivery's signature and records it.

Standard library only, so that `make smoke` can run it against any deployment from a bare
checkout. Each POST is answered 200 and appended to OUT as one JSON line: the event id,
topic and body, and whether its X-Webhook-Signature is valid for SECRET (the scheme in
docs/events.md: HMAC-SHA256 of "<t>.<raw body>", timestamps at most five minutes old).
It stops by itself after --seconds.

Usage: python3 scripts/webhook_receiver.py --listen 127.0.0.1:8099 --secret S --out FILE
"""

import argparse
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAX_AGE_SECONDS = 300


def signature_is_valid(*, secret: str, header: str, body: bytes, now: float) -> bool:
    """Whether `header` (t=<unix seconds>,v1=<hex>) signs `body` with `secret`, recently."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > MAX_AGE_SECONDS:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), parts.get("v1", ""))


def serve(*, host: str, port: int, secret: str, out: Path, seconds: float) -> None:
    """Record deliveries to `out` until `seconds` have passed."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            record = {
                "id": self.headers.get("X-Webhook-Id", ""),
                "topic": self.headers.get("X-Webhook-Topic", ""),
                "valid_signature": signature_is_valid(
                    secret=secret,
                    header=self.headers.get("X-Webhook-Signature", ""),
                    body=body,
                    now=time.time(),
                ),
                "body": body.decode("utf-8", "replace"),
            }
            with lock, out.open("a") as lines:
                lines.write(json.dumps(record) + "\n")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    timer = threading.Timer(seconds, server.shutdown)
    timer.start()
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        timer.cancel()
        server.server_close()


def main() -> None:
    """Parse the arguments and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="host:port to listen on")
    parser.add_argument("--secret", required=True, help="the subscription's secret")
    parser.add_argument("--out", required=True, type=Path, help="JSON lines, one a delivery")
    parser.add_argument("--seconds", type=float, default=300, help="stop after this long")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    args.out.touch()
    serve(host=host, port=int(port), secret=args.secret, out=args.out, seconds=args.seconds)


if __name__ == "__main__":
    main()
