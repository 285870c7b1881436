"""CPU of the event pipeline's own code per event, in-process, without Celery.

Makes N user updates (each a `user.updated` event), then runs their handlers
(events.services.event_handle_batch) and attempts their webhook deliveries
(events.webhooks.webhook_attempt_batch), in batches of EVENTS_BATCH_SIZE as the worker
does under load, in this process against a keep-alive receiver on loopback, timing each
phase with this process's CPU clock. What is left of the worker's
CPU per event in `make bench` beyond these two figures is Celery's (message handling,
the pool) and logging. With BENCH_PROFILE=1, a cProfile of both phases follows (sorted by
BENCH_PROFILE_SORT, cumulative by default).

Usage, against `make services-up`'s services (or any in .services.env):
  set -a; . ./.services.env; set +a
  DJANGO_DEBUG=false WEBHOOK_ALLOW_PRIVATE_TARGETS=true .venv/bin/python -m bench.event_cpu 300

It creates a user and a subscription of its own, and deletes the subscription at the end.
"""

import cProfile
import os
import pstats
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from unittest import mock
from uuid import UUID

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402

from events import services as events_services  # noqa: E402
from events import webhooks  # noqa: E402
from events.models import OutboxEvent, WebhookDelivery  # noqa: E402
from users import services as users_services  # noqa: E402


class _Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def _batches(ids: Sequence[UUID]) -> list[Sequence[UUID]]:
    size = settings.EVENTS_BATCH_SIZE
    return [ids[first : first + size] for first in range(0, len(ids), size)]


def main() -> None:
    """Measure and print ms of CPU per event handled and per delivery attempted."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    subscription = webhooks.webhook_subscription_create(
        url=f"http://127.0.0.1:{server.server_address[1]}/hook", topics=["user.updated"]
    )
    user = users_services.user_create(
        email=f"event-cpu-{uuid.uuid4().hex}@example.com", password=None
    )
    # The events stay in the outbox: this process handles them itself, no broker.
    with mock.patch.object(events_services, "event_relay", return_value=True):
        for number in range(count):
            user = users_services.user_update(user=user, data={"display_name": f"n{number}"})
    events = list(
        OutboxEvent.objects.filter(aggregate_id=str(user.pk), topic="user.updated").values_list(
            "pk", flat=True
        )
    )
    profile = cProfile.Profile()
    profiling = os.environ.get("BENCH_PROFILE") == "1"
    try:
        with mock.patch.object(webhooks, "_enqueue_deliveries"):
            if profiling:
                profile.enable()
            started = time.process_time()
            for batch in _batches(events):
                events_services.event_handle_batch(event_ids=batch)
            handled = time.process_time()
            deliveries = list(
                WebhookDelivery.objects.filter(event_id__in=events).values_list("pk", flat=True)
            )
            attempts_started = time.process_time()
            for batch in _batches(deliveries):
                webhooks.webhook_attempt_batch(delivery_ids=batch)
            attempted = time.process_time()
            profile.disable()
    finally:
        webhooks.webhook_subscription_delete(subscription=subscription)
        server.shutdown()
    print(
        f"batches of {settings.EVENTS_BATCH_SIZE}; "
        f"{len(events)} events: handlers {1000 * (handled - started) / len(events):.2f} ms CPU "
        f"per event; {len(deliveries)} deliveries: "
        f"{1000 * (attempted - attempts_started) / max(len(deliveries), 1):.2f} ms CPU each"
    )
    if profiling:
        stats = pstats.Stats(profile)
        stats.sort_stats(os.environ.get("BENCH_PROFILE_SORT", "cumulative")).print_stats(40)


if __name__ == "__main__":
    main()
