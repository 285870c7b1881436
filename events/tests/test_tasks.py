"""events.tasks with the real Redis broker and a real worker process (not eager mode).

Each test goes through the API or the services as production does; the worker is a
`celery -A config worker --beat` subprocess on the same test database.
"""

import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from config.celery import app as celery_app
from events import signing
from events.models import HandledEvent, OutboxEvent, WebhookAttempt, WebhookDelivery
from events.tasks import handle_event, handle_events
from events.tests.conftest import (
    WORKER_SETTINGS,
    Receiver,
    Worker,
    broker_drained,
    sent_emails,
    wait_for,
)
from events.webhooks import FAN_OUT, webhook_subscription_create
from users.handlers import WELCOME_EMAIL
from users.models import User
from users.topics import USER_CREATED

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]

STRONG = "violet-harbour-lantern-42"
SECRET = "a-test-secret-of-enough-length"


def sign_up(email: str, request_id: str = "") -> dict[str, Any]:
    headers = {"X-Request-ID": request_id} if request_id else {}
    response = APIClient().post(
        "/api/v1/users/",
        {"email": email, "password": STRONG, "display_name": "Ann"},
        format="json",
        headers=headers,
    )
    assert response.status_code == 201, response.content
    return dict(response.json())


def subscribe(receiver: Receiver) -> None:
    webhook_subscription_create(url=receiver.url, topics=[USER_CREATED], secret=SECRET)


def handled(event: OutboxEvent, handler: str) -> int:
    return HandledEvent.objects.filter(event_id=event.pk, handler=handler).count()


def delivery_of(event: OutboxEvent) -> WebhookDelivery:
    return WebhookDelivery.objects.get(event=event)


def delivery_status(event: OutboxEvent) -> str | None:
    return WebhookDelivery.objects.filter(event=event).values_list("status", flat=True).first()


def test_sign_up_sends_the_welcome_email_and_a_signed_webhook_once(
    worker: Worker, receiver: Receiver
) -> None:
    subscribe(receiver)
    body = sign_up("ann@example.com", request_id="req-ann-1")

    event = OutboxEvent.objects.get(topic=USER_CREATED, aggregate_id=body["id"])
    assert event.published_at is not None, "the fast path publishes on commit"
    assert event.request_id == "req-ann-1"
    wait_for(lambda: receiver.accepted, what="the webhook")
    wait_for(lambda: sent_emails(worker.env, "ann@example.com"), what="the welcome email")
    wait_for(lambda: broker_drained(worker.env["CELERY_BROKER_URL"]), what="the worker to idle")

    [request] = receiver.requests
    assert request.headers["X-Webhook-Id"] == str(event.pk)
    assert signing.verify(
        secret=SECRET,
        header=request.headers[signing.SIGNATURE_HEADER],
        body=request.body,
        now=int(time.time()),
    )
    assert not signing.verify(
        secret="another-secret-entirely",
        header=request.headers[signing.SIGNATURE_HEADER],
        body=request.body,
        now=int(time.time()),
    )
    assert receiver.ids() == [str(event.pk)]
    assert b"password" not in request.body
    [message] = sent_emails(worker.env, "ann@example.com")
    assert message["Subject"] == "Welcome"
    assert handled(event, WELCOME_EMAIL) == 1
    assert handled(event, FAN_OUT) == 1
    assert delivery_of(event).status == WebhookDelivery.Status.DELIVERED
    # The request id travelled in the task headers into the worker's log lines.
    lines = [json.loads(line) for line in worker.tail().splitlines() if line.startswith("{")]
    assert any(
        line.get("request_id") == "req-ann-1"
        and f"handling event {event.pk}" in line.get("event", "")
        for line in lines
    ), worker.tail()


def test_broker_down_keeps_the_event_and_the_sweeper_publishes_it_once(
    worker: Worker, broker_down: Any
) -> None:
    # Broker down for everyone: the worker (and its sweeper) too.
    worker.stop()

    body = sign_up("bob@example.com")

    event = OutboxEvent.objects.get(aggregate_id=body["id"])
    assert event.published_at is None
    assert event.attempts == 1
    assert "Error" in event.last_error
    assert User.objects.filter(pk=body["id"]).exists()

    broker_down()  # the broker is back
    worker.start()

    wait_for(lambda: sent_emails(worker.env, "bob@example.com"), what="the email after the sweep")
    wait_for(lambda: handled(event, FAN_OUT), what="the webhook handler")
    wait_for(lambda: broker_drained(worker.env["CELERY_BROKER_URL"]), what="the worker to idle")
    event.refresh_from_db()
    assert event.published_at is not None
    assert event.attempts == 2
    assert event.last_error == ""
    assert len(sent_emails(worker.env, "bob@example.com")) == 1
    assert handled(event, WELCOME_EMAIL) == 1


def test_worker_killed_mid_task_redelivers_and_completes_without_duplicates(
    worker: Worker, receiver: Receiver
) -> None:
    subscribe(receiver)
    receiver.hold_first = True
    log_start = worker.log_size()

    body = sign_up("cy@example.com")
    event = OutboxEvent.objects.get(aggregate_id=body["id"])
    # The delivery task is mid-request: the endpoint holds the connection open.
    wait_for(lambda: receiver.requests, what="the webhook request to arrive")
    # The email's transaction has committed (killing it mid-send is the one window where
    # an email can repeat; see docs/events.md).
    wait_for(lambda: handled(event, WELCOME_EMAIL), what="the welcome email")

    [task_id] = re.findall(
        r"deliver_webhooks\[([0-9a-f-]+)\] received", worker.log_since(log_start)
    )

    worker.kill()
    receiver.release.set()
    assert delivery_of(event).status == WebhookDelivery.Status.PENDING
    restart = worker.log_size()
    worker.start()

    wait_for(
        lambda: delivery_status(event) == WebhookDelivery.Status.DELIVERED,
        timeout=30,
        what="the delivery to complete after the restart",
    )
    # Redis handed the killed worker's unacknowledged message out again (same task id).
    wait_for(
        lambda: f"deliver_webhooks[{task_id}] succeeded" in worker.log_since(restart),
        timeout=30,
        what="the original message to be redelivered",
    )
    assert receiver.ids() == [str(event.pk)]
    assert len(receiver.requests) == 2
    assert receiver.requests[1].headers["X-Webhook-Id"] == str(event.pk)
    assert WebhookAttempt.objects.filter(delivery__event=event).count() == 1
    assert len(sent_emails(worker.env, "cy@example.com")) == 1
    assert handled(event, WELCOME_EMAIL) == 1


def test_sigterm_mid_task_finishes_or_redelivers_the_delivery_exactly_once(
    worker: Worker, receiver: Receiver, record_property: Callable[[str, object], None]
) -> None:
    subscribe(receiver)
    receiver.slow_first = 1.5
    log_start = worker.log_size()

    body = sign_up("hal@example.com")
    event = OutboxEvent.objects.get(aggregate_id=body["id"])
    # The delivery task is mid-request: the endpoint takes its time to answer.
    [first] = wait_for(lambda: receiver.requests, what="the webhook request to arrive")

    signalled_at = time.monotonic()
    assert worker.terminate(timeout=15) == 0, worker.tail()
    answered_at = wait_for(lambda: first.answered_at, what="the receiver to be done with it")
    assert answered_at > signalled_at, "the SIGTERM came after the task, not during it"

    # Either Celery's warm shutdown let the running task finish (the expected way), or
    # its message stayed unacknowledged and the next worker gets it again.
    finished = delivery_status(event) == WebhookDelivery.Status.DELIVERED
    path = "finished in the warm shutdown" if finished else "redelivered to the next worker"
    record_property("sigterm_path", path)
    if finished:
        assert first.status == 200
        log = worker.log_since(log_start)
        assert re.search(r"Warm shutdown.*deliver_webhooks\[[0-9a-f-]+\] succeeded", log, re.S)

    worker.start()
    wait_for(
        lambda: delivery_status(event) == WebhookDelivery.Status.DELIVERED,
        timeout=30,
        what=f"the delivery to complete ({path})",
    )
    wait_for(lambda: sent_emails(worker.env, "hal@example.com"), what="the welcome email")
    wait_for(lambda: broker_drained(worker.env["CELERY_BROKER_URL"]), what="the worker to idle")
    assert receiver.ids() == [str(event.pk)], path
    assert delivery_of(event).attempts == 1, path
    assert WebhookAttempt.objects.filter(delivery__event=event).count() == 1, path
    assert len(sent_emails(worker.env, "hal@example.com")) == 1, path
    assert handled(event, WELCOME_EMAIL) == 1, path
    assert handled(event, FAN_OUT) == 1, path


def test_the_same_message_twice_is_handled_once(worker: Worker, receiver: Receiver) -> None:
    subscribe(receiver)
    body = sign_up("di@example.com")
    event = OutboxEvent.objects.get(aggregate_id=body["id"])
    wait_for(lambda: handled(event, WELCOME_EMAIL) and receiver.accepted, what="first handling")

    # A relay's copy (a list of ids), an earlier release's (one id), a retry's copy, and
    # an earlier release's copy naming one handler.
    handle_events.apply_async(args=[[str(event.pk), str(event.pk)]])
    handle_events.apply_async(args=[str(event.pk)])
    handle_event.apply_async(args=[str(event.pk)])
    for name in (WELCOME_EMAIL, FAN_OUT):
        handle_event.apply_async(args=[str(event.pk), name])
    wait_for(lambda: broker_drained(worker.env["CELERY_BROKER_URL"]), what="the duplicates")

    assert len(sent_emails(worker.env, "di@example.com")) == 1
    assert receiver.ids() == [str(event.pk)]
    assert len(receiver.requests) == 1
    assert handled(event, WELCOME_EMAIL) == 1
    assert handled(event, FAN_OUT) == 1


def test_a_failing_handler_retries_without_blocking_the_others(
    worker: Worker, receiver: Receiver
) -> None:
    subscribe(receiver)
    # Break the worker's email backend for real: its directory becomes a plain file.
    emails = Path(worker.env["EMAIL_FILE_PATH"])
    parked = emails.with_name("emails-parked")
    emails.rename(parked)
    emails.write_text("not a directory")
    log_start = worker.log_size()

    def email_retried() -> bool:
        return any(
            "handle_event[" in line and "retry: Retry in" in line and "ImproperlyConfigured" in line
            for line in worker.log_since(log_start).splitlines()
        )

    try:
        body = sign_up("gus@example.com")
        event = OutboxEvent.objects.get(aggregate_id=body["id"])
        # The webhook handler is its own task: it goes out while the email keeps failing.
        wait_for(lambda: receiver.accepted, what="the webhook despite the email failing")
        wait_for(email_retried, what="the email handler to be retried")
        assert handled(event, WELCOME_EMAIL) == 0
    finally:
        emails.unlink()
        parked.rename(emails)

    wait_for(lambda: handled(event, WELCOME_EMAIL), what="the email once SMTP is back")
    wait_for(lambda: broker_drained(worker.env["CELERY_BROKER_URL"]), what="the worker to idle")
    assert len(sent_emails(worker.env, "gus@example.com")) == 1
    assert receiver.ids() == [str(event.pk)]


def test_a_webhook_failing_three_times_is_delivered_with_growing_delays(
    worker: Worker, receiver: Receiver
) -> None:
    subscribe(receiver)
    receiver.statuses = [500, 502, 503]

    body = sign_up("ed@example.com")
    event = OutboxEvent.objects.get(aggregate_id=body["id"])

    wait_for(
        lambda: delivery_status(event) == WebhookDelivery.Status.DELIVERED,
        what="the fourth attempt",
    )
    assert [r.status for r in receiver.requests] == [500, 502, 503, 200]
    assert receiver.ids() == [str(event.pk)]
    attempts = list(WebhookAttempt.objects.filter(delivery__event=event).order_by("number"))
    assert [a.status_code for a in attempts] == [500, 502, 503, 200]
    # The scheduled delays grow; the endpoint saw each request no sooner than scheduled.
    delays = [a.retry_in_ms or 0 for a in attempts[:3]]
    assert delays[0] < delays[1] < delays[2]
    base_ms = float(WORKER_SETTINGS["WEBHOOK_RETRY_BACKOFF_SECONDS"]) * 1000
    for n, delay in enumerate(delays):
        assert base_ms * 2**n / 2 <= delay <= base_ms * 2**n
    arrivals = [r.at for r in receiver.requests]
    gaps_ms = [(later - earlier) * 1000 for earlier, later in pairwise(arrivals)]
    for gap, delay in zip(gaps_ms, delays, strict=True):
        assert gap >= delay - 5  # the countdown starts after the failed request; ms rounding
    assert attempts[3].retry_in_ms is None


def test_an_always_failing_webhook_is_dead_lettered_and_retried_from_the_admin(
    worker: Worker, receiver: Receiver, client: Any, staff_login: Any
) -> None:
    subscribe(receiver)
    max_attempts = int(WORKER_SETTINGS["WEBHOOK_MAX_ATTEMPTS"])
    breaker_after = int(WORKER_SETTINGS["WEBHOOK_BREAKER_FAIL_MAX"])
    receiver.statuses = [500] * 100

    body = sign_up("flo@example.com")
    event = OutboxEvent.objects.get(aggregate_id=body["id"])
    wait_for(
        lambda: delivery_status(event) == WebhookDelivery.Status.DEAD,
        timeout=30,
        what="the dead letter",
    )

    delivery = delivery_of(event)
    assert delivery.attempts == max_attempts
    # The breaker opened after FAIL_MAX failures: later attempts never reached the endpoint.
    assert len(receiver.requests) == breaker_after
    assert "Circuit breaker open" in delivery.last_error
    assert delivery.subscription.breaker_opened_at is not None
    dead_page = staff_login.get("/admin/events/webhookdelivery/?status=dead")
    assert str(event.pk) in dead_page.content.decode()

    receiver.statuses = []  # the endpoint is back
    response = staff_login.post(
        "/admin/events/webhookdelivery/",
        {"action": "retry_deliveries", "_selected_action": [str(delivery.pk)]},
    )
    assert response.status_code == 302

    wait_for(
        lambda: delivery_status(event) == WebhookDelivery.Status.DELIVERED,
        what="the retried delivery",
    )
    assert receiver.ids() == [str(event.pk)]
    delivery = delivery_of(event)
    assert delivery.subscription.breaker_opened_at is None
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == max_attempts + 1


def test_concurrent_sign_ups_make_exactly_one_event_and_one_email_each(
    worker: Worker, throttle_rates: Any
) -> None:
    throttle_rates(signup="1000/minute", anon="1000/minute")
    emails = [f"crowd{n}@example.com" for n in range(20)]

    def sign_up_and_close(address: str) -> None:
        try:
            sign_up(address)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(sign_up_and_close, emails))

    assert OutboxEvent.objects.filter(topic=USER_CREATED).count() == len(emails)
    wait_for(
        lambda: HandledEvent.objects.filter(handler=WELCOME_EMAIL).count() == len(emails),
        what="every welcome email",
    )
    wait_for(lambda: broker_drained(worker.env["CELERY_BROKER_URL"]), what="the worker to idle")
    assert HandledEvent.objects.filter(handler=WELCOME_EMAIL).count() == len(emails)
    assert [len(sent_emails(worker.env, address)) for address in emails] == [1] * len(emails)
    assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("events.tasks.handle_events", "events"),
        ("events.tasks.handle_event", "events"),
        ("events.tasks.deliver_webhooks", "webhooks"),
        ("events.tasks.deliver_webhook", "webhooks"),
        ("events.tasks.sweep_outbox", "housekeeping"),
        ("users.tasks.delete_expired_auth_tokens", "housekeeping"),
    ],
)
def test_each_task_has_its_queue(task: str, queue: str) -> None:
    # Beat's jobs must not wait behind a backlog of handler tasks (docs/reliability.md).
    assert celery_app.amqp.router.route({}, task)["queue"].name == queue


class _TimerEntry:
    """A timer entry as kombu's timer hands out: it can only be cancelled."""

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def test_a_strategy_rebuilt_after_a_reconnect_lets_the_next_message_start_a_timer() -> None:
    # Celery clears the consumer's timer on a lost connection and builds the strategies
    # again: the entry the batch task held is dead, and must not stop a new one starting.
    dead = _TimerEntry()
    handle_events._tref = dead
    consumer = SimpleNamespace(
        pool=SimpleNamespace(apply_async=None),
        hostname="test@host",
        connection_errors=(),
        event_dispatcher=None,
        timer=None,
    )
    try:
        handle_events.Strategy(handle_events, celery_app, consumer)
        assert dead.cancelled
        assert handle_events._tref is None
    finally:
        handle_events._tref = None
