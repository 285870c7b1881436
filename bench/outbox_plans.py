"""`make bench-outbox-plans`: the event pipeline's queries keep their plans at a million
outbox rows.

DESTRUCTIVE: it empties the outbox, handled-event, webhook subscription, delivery and
attempt tables (TRUNCATE), so it refuses to run unless BENCH_PLANS_TRUNCATE=1. Point it
only at a disposable database; `make bench-outbox-plans` starts one of its own.

Usage (Django settings from the environment, the database migrated):

    BENCH_PLANS_TRUNCATE=1 DJANGO_DEBUG=false python -m bench.outbox_plans

It seeds, in one INSERT ... SELECT generate_series per table, then VACUUM ANALYZE:

* 1,000,000 outbox events, one every 7.5 s back to 87 days ago: the newest 3,000
  unpublished, the 3,000 before them published but not handled, the rest both;
* a handled-event record for each of two handlers of the newest 500,000 handled events;
* a delivery to one subscription for every fifth handled event (198,800), the newest
  4,000 owed (half pending and stalled, a few of those claimed now; half retrying later),
  the rest delivered, each delivered or retrying one with its attempt.

The subscription is inactive, so an attempt fails before any request: no network, and
the attempt's every statement still runs.

Then it runs each service of the pipeline for real (the relay, the sweeper, the
redispatch of unhandled events, a handler batch, a webhook attempt batch, the stalled
delivery sweeper, one retention batch), each in a transaction that is rolled back. The
first statement of each shape a service sends is first run under EXPLAIN (ANALYZE,
BUFFERS, FORMAT JSON) in a savepoint rolled back, on the rows it meets there. Handing
events to the broker is replaced by a no-op: this measures the database. Prints a
Markdown table (service, statement, top plan nodes, rows, ms) and exits 1 if any plan
reads a table of more than 10,000 rows with a Seq Scan.

BENCH_PLANS_SEED=0 keeps the rows of an earlier run (nothing is emptied or seeded): to
try an index without seeding again.
"""

import logging
import os
import re
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench.explain import Plan, describe, rows, seq_scanned  # noqa: E402
from events import registry, retention, services, webhooks  # noqa: E402
from events.models import (  # noqa: E402
    HandledEvent,
    OutboxEvent,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from users import topics  # noqa: E402

EVENTS = 1_000_000
UNPUBLISHED = 3_000
UNHANDLED = 3_000
HANDLED = EVENTS - UNPUBLISHED - UNHANDLED
HANDLED_RECORDS_EVENTS = 500_000
OWED_DELIVERIES = 4_000
SEQ_SCAN_LIMIT = 10_000
DATA = frozenset({"SELECT", "UPDATE", "INSERT", "DELETE"})
TABLES = [
    model._meta.db_table
    for model in (WebhookAttempt, WebhookDelivery, WebhookSubscription, HandledEvent, OutboxEvent)
]

# In each statement, event n (1 the oldest) was `created` (EVENTS - n) * 7.5 s before the
# seed's `now`.
SEED_EVENTS = """
INSERT INTO events_outboxevent (id, topic, schema_version, aggregate_id, payload, created_at,
    published_at, handled_at, redispatches, attempts, last_error, request_id)
SELECT md5('plans-event-' || n)::uuid, %(topic)s, 1, user_id,
    jsonb_build_object('id', user_id, 'fields', jsonb_build_array('display_name')),
    created,
    CASE WHEN n <= %(published)s THEN created + interval '1 second' END,
    CASE WHEN n <= %(handled)s THEN created + interval '2 seconds' END,
    0, CASE WHEN n <= %(published)s THEN 1 ELSE 0 END, '', ''
FROM generate_series(1, %(events)s) AS n,
    LATERAL (SELECT %(now)s - (%(events)s - n) * interval '7.5 seconds' AS created) AS c,
    LATERAL (SELECT md5('plans-user-' || n %% 100000)::uuid::text AS user_id) AS u
"""
SEED_HANDLED = """
INSERT INTO events_handledevent (event_id, handler, handled_at)
SELECT md5('plans-event-' || n)::uuid, handler, created + interval '2 seconds'
FROM generate_series(%(handled)s - %(records)s + 1, %(handled)s) AS n,
    LATERAL (SELECT %(now)s - (%(events)s - n) * interval '7.5 seconds' AS created) AS c,
    unnest(%(handlers)s::text[]) AS handler
"""
# Owed: pending ones (n % 10 = 0) are long past due, so stalled; one in a hundred is held
# by an attempt right now. Retrying ones (n % 10 = 5) are due in five minutes.
SEED_DELIVERIES = """
INSERT INTO events_webhookdelivery (id, subscription_id, event_id, status, attempts,
    last_error, next_attempt_at, claimed_until, claim_token, created_at, delivered_at)
SELECT md5('plans-delivery-' || n)::uuid, %(subscription)s, md5('plans-event-' || n)::uuid,
    status, CASE WHEN status = 'pending' THEN 0 ELSE 1 END,
    CASE WHEN status = 'retrying' THEN 'HTTP 503' ELSE '' END,
    CASE status WHEN 'pending' THEN created + interval '2 seconds'
        WHEN 'retrying' THEN %(now)s + interval '5 minutes' END,
    CASE WHEN status = 'pending' AND n %% 1000 = 0 THEN %(now)s + interval '5 minutes' END,
    CASE WHEN status = 'pending' AND n %% 1000 = 0 THEN md5('plans-claim-' || n)::uuid END,
    created + interval '2 seconds',
    CASE WHEN status = 'delivered' THEN created + interval '3 seconds' END
FROM generate_series(5, %(handled)s, 5) AS n,
    LATERAL (SELECT %(now)s - (%(events)s - n) * interval '7.5 seconds' AS created) AS c,
    LATERAL (SELECT CASE WHEN n <= %(handled)s - %(owed)s * 5 THEN 'delivered'
        WHEN n %% 10 = 0 THEN 'pending' ELSE 'retrying' END AS status) AS s
"""
SEED_ATTEMPTS = """
INSERT INTO events_webhookattempt (delivery_id, number, attempted_at, status_code, error,
    duration_ms, retry_in_ms)
SELECT id, 1, created_at + interval '1 second',
    CASE WHEN status = 'delivered' THEN 200 ELSE 503 END, last_error, 40,
    CASE WHEN status = 'retrying' THEN 30000 END
FROM events_webhookdelivery WHERE attempts > 0
"""


def log(message: str) -> None:
    """Progress on stderr; the table goes to stdout."""
    print(f"outbox-plans: {message}", file=sys.stderr, flush=True)


def seed() -> None:
    """Empty the pipeline's tables and fill them as the module docstring says."""
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(TABLES)}")
    subscription = WebhookSubscription(
        url="https://hooks.example.com/plans",
        topics=[topics.USER_UPDATED],
        secret=secrets.token_urlsafe(32),
        is_active=False,
    )
    subscription.full_clean()
    subscription.save(force_insert=True)
    params: dict[str, Any] = {
        "now": timezone.now(),
        "events": EVENTS,
        "published": EVENTS - UNPUBLISHED,
        "handled": HANDLED,
        "records": HANDLED_RECORDS_EVENTS,
        "owed": OWED_DELIVERIES,
        "topic": topics.USER_UPDATED,
        "handlers": list(registry.handler_names(topics.USER_UPDATED)),
        "subscription": subscription.pk,
    }
    with connection.cursor() as cursor:
        for table, sql in (
            ("outbox events", SEED_EVENTS),
            ("handled-event records", SEED_HANDLED),
            ("webhook deliveries", SEED_DELIVERIES),
            ("webhook attempts", SEED_ATTEMPTS),
        ):
            cursor.execute(sql, params)
            log(f"{cursor.rowcount:,} {table}")
        # Vacuumed as autovacuum keeps a live table: statistics and the visibility map.
        for table in TABLES:
            cursor.execute(f"VACUUM ANALYZE {table}")


def service_runs() -> list[tuple[str, Callable[[], object]]]:
    """Each service of the pipeline, with arguments it meets in production."""
    size = settings.EVENTS_BATCH_SIZE
    unpublished = OutboxEvent.objects.filter(published_at__isnull=True).earliest("created_at")
    unhandled = list(
        OutboxEvent.objects.filter(published_at__isnull=False, handled_at__isnull=True)
        .order_by("created_at")
        .values_list("pk", flat=True)[:size]
    )
    due = list(
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING, claim_token__isnull=True
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:size]
    )
    return [
        ("event_relay", lambda: services.event_relay(events=[unpublished])),
        ("outbox_sweep", lambda: services.outbox_sweep(max_batches=1)),
        ("outbox_redispatch_unhandled", services.outbox_redispatch_unhandled),
        ("event_handle_batch", lambda: services.event_handle_batch(event_ids=unhandled)),
        ("webhook_attempt_batch", lambda: webhooks.webhook_attempt_batch(delivery_ids=due)),
        ("webhook_sweep_stalled", webhooks.webhook_sweep_stalled),
        ("retention_purge", lambda: retention.retention_purge(max_batches=1)),
    ]


class PlanRecorder:
    """A database execute wrapper: before the first statement of each shape a service
    sends, EXPLAIN ANALYZE it where it stands (in a savepoint rolled back), then run it.

    So each plan is taken on the very rows the statement meets in the service: the claimed
    read after its claim, the sweeper's updates after its locking read.
    """

    def __init__(self) -> None:
        self.shapes: set[str] = set()
        self.plans: list[tuple[str, dict[str, Any]]] = []

    def __call__(
        self,
        execute: Callable[..., Any],
        sql: str,
        params: Any,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        """Explain `sql` if its shape is new, then execute it as asked."""
        shape = re.sub(r"\(%s(, %s)*\)", "(%s)", sql)
        if not many and sql.split(None, 1)[0].upper() in DATA and shape not in self.shapes:
            self.shapes.add(shape)
            # The driver's own cursor: Django's would run this wrapper again.
            cursor = context["cursor"].cursor
            cursor.execute("SAVEPOINT outbox_plans")
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", params)
            (document,) = cursor.fetchone()[0]
            cursor.execute("ROLLBACK TO SAVEPOINT outbox_plans")
            self.plans.append((sql, document))
        return execute(sql, params, many, context)


def explained(run: Callable[[], object]) -> list[tuple[str, dict[str, Any]]]:
    """Each distinct data statement `run` sends and its plan; its transaction rolled back."""
    recorder = PlanRecorder()
    with (
        mock.patch.object(services, "_enqueue_handlers"),
        connection.execute_wrapper(recorder),
        transaction.atomic(),
    ):
        run()
        transaction.set_rollback(True)
    return recorder.plans


def _label(sql: str) -> str:
    match = re.match(r'\s*(SELECT|UPDATE|INSERT INTO|DELETE FROM)\b.*?"(\w+)"', sql, re.S)
    if not match:
        return sql[:40]
    verb, table = match.groups()
    locking = " FOR UPDATE" if "FOR UPDATE" in sql else ""
    return f"{verb.split()[0]}{locking} {table.removeprefix('events_')}"


def table_rows() -> dict[str, float]:
    """Each table's row count as the planner knows it (after ANALYZE)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname, reltuples FROM pg_class WHERE relkind = 'r'")
        return dict(cursor.fetchall())


def main() -> None:
    """Seed, run every service, explain each of its statements; exit 1 on a big Seq Scan."""
    if os.environ.get("BENCH_PLANS_SEED", "1") != "0":
        if os.environ.get("BENCH_PLANS_TRUNCATE") != "1":
            sys.exit("outbox-plans: this empties the outbox tables; set BENCH_PLANS_TRUNCATE=1")
        started = time.monotonic()
        log(f"seeding; load average {os.getloadavg()[0]:.1f}")
        seed()
        log(f"seeded in {time.monotonic() - started:.0f} s")
    sizes = table_rows()
    # The services log each event handled and each delivery dead-lettered: noise here.
    logging.disable(logging.WARNING)
    failures = []
    print("| service | statement | plan (top nodes) | rows | ms |")
    print("| --- | --- | --- | ---: | ---: |")
    for name, run in service_runs():
        for sql, document in explained(run):
            plan: Plan = document["Plan"]
            big = [table for table in seq_scanned(plan) if sizes.get(table, 0) > SEQ_SCAN_LIMIT]
            if big:
                failures.append(f"{name}: Seq Scan on {', '.join(big)}\n  {sql}")
            print(
                f"| {name} | {_label(sql)} | {describe(plan)} | {rows(plan):,} "
                f"| {document['Execution Time']:.2f} |"
            )
    log(f"done; load average {os.getloadavg()[0]:.1f}")
    for failure in failures:
        log(failure)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
