"""events.webhooks: subscriptions, fan-out, one attempt at a time, breaker, dead letters.

Attempts post to a real HTTP server on 127.0.0.1; the worker-level behaviour (retries
with backoff across a real broker) is in test_tasks.py.
"""

import json
import socket
import threading
import time
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.test import override_settings
from django.utils import timezone

from config.celery import app as celery_app
from core.messaging.broker_probe import broker_queue_stats
from events import signing, webhook_http, webhooks
from events.models import OutboxEvent, WebhookAttempt, WebhookDelivery, WebhookSubscription
from events.tasks import deliver_webhooks
from events.tests.conftest import Receiver
from events.tests.factories import OutboxEventFactory, WebhookDeliveryFactory
from users.topics import USER_CREATED, USER_UPDATED

pytestmark = pytest.mark.django_db


def make_event(topic: str = USER_CREATED) -> OutboxEvent:
    return OutboxEventFactory.create(
        topic=topic, aggregate_id="a", payload={"id": "a", "email": "ann@example.com"}
    )


def make_delivery(receiver: Receiver, **subscription: Any) -> WebhookDelivery:
    sub = webhooks.webhook_subscription_create(
        url=receiver.url, topics=[USER_CREATED], secret="s" * 20, **subscription
    )
    return WebhookDeliveryFactory.create(subscription=sub, event=make_event())


class TestSubscriptions:
    def test_a_secret_is_generated_when_none_is_given(self) -> None:
        sub = webhooks.webhook_subscription_create(
            url="https://hooks.example.com/x", topics=[USER_CREATED]
        )
        assert len(sub.secret) >= 32

    def test_topics_must_be_known_and_not_empty(self) -> None:
        for topics in ([], ["user.renamed"]):
            with pytest.raises(ValidationError) as caught:
                webhooks.webhook_subscription_create(url="https://x.example.com", topics=topics)
            assert set(caught.value.message_dict) == {"topics"}

    @override_settings(WEBHOOK_ALLOW_PRIVATE_TARGETS=False)
    def test_an_internal_target_is_a_url_error(self) -> None:
        # Which addresses count as internal: test_ssrf.py.
        with pytest.raises(ValidationError) as caught:
            webhooks.webhook_subscription_create(
                url="http://169.254.169.254/x", topics=[USER_CREATED]
            )
        assert set(caught.value.message_dict) == {"url"}

    @override_settings(WEBHOOK_ALLOW_PRIVATE_TARGETS=False)
    def test_a_public_address_is_accepted(self) -> None:
        sub = webhooks.webhook_subscription_create(
            url="http://93.184.215.14/hook", topics=[USER_CREATED]
        )
        assert sub.pk

    def test_update_changes_only_given_fields_and_refuses_others(self) -> None:
        sub = webhooks.webhook_subscription_create(
            url="https://hooks.example.com/x", topics=[USER_CREATED]
        )
        webhooks.webhook_subscription_update(subscription=sub, data={"is_active": False})
        sub.refresh_from_db()
        assert sub.is_active is False
        with pytest.raises(ValidationError):
            webhooks.webhook_subscription_update(subscription=sub, data={"consecutive_failures": 0})


class TestFanOut:
    def test_one_delivery_per_matching_active_subscription(
        self, django_capture_on_commit_callbacks: Any
    ) -> None:
        created = webhooks.webhook_subscription_create(
            url="https://a.example.com", topics=[USER_CREATED]
        )
        webhooks.webhook_subscription_create(url="https://b.example.com", topics=[USER_UPDATED])
        webhooks.webhook_subscription_create(
            url="https://c.example.com", topics=[USER_CREATED], is_active=False
        )
        event = make_event()

        with django_capture_on_commit_callbacks() as callbacks:
            webhooks.webhook_fan_out([event])
            webhooks.webhook_fan_out([event])

        assert list(WebhookDelivery.objects.values_list("subscription", flat=True)) == [created.pk]
        assert len(callbacks) == 1


class TestAttempt:
    def test_delivers_a_signed_body(self, receiver: Receiver) -> None:
        delivery = make_delivery(receiver)

        assert webhooks.webhook_attempt(delivery_id=delivery.pk) is None

        delivery.refresh_from_db()
        assert delivery.status == WebhookDelivery.Status.DELIVERED
        assert delivery.attempts == 1
        [request] = receiver.requests
        body = json.loads(request.body)
        assert body["id"] == str(delivery.event.pk)
        assert body["topic"] == USER_CREATED
        assert body["payload"] == delivery.event.payload
        assert signing.verify(
            secret="s" * 20,
            header=request.headers[signing.SIGNATURE_HEADER],
            body=request.body,
            now=int(time.time()),
        )
        # Delivered is final: a redelivered task does nothing.
        assert webhooks.webhook_attempt(delivery_id=delivery.pk) is None
        assert len(receiver.requests) == 1

    @override_settings(WEBHOOK_MAX_ATTEMPTS=3, WEBHOOK_BREAKER_FAIL_MAX=10)
    def test_failures_retry_with_growing_delays_then_dead_letter(self, receiver: Receiver) -> None:
        receiver.statuses = [500, 500, 500]
        delivery = make_delivery(receiver)
        delays = []
        for _ in range(2):
            retry_in = webhooks.webhook_attempt(delivery_id=delivery.pk)
            assert retry_in is not None
            delays.append(retry_in)
            WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)
        assert delays[0] < delays[1]
        assert webhooks.webhook_attempt(delivery_id=delivery.pk) is None

        delivery.refresh_from_db()
        assert delivery.status == WebhookDelivery.Status.DEAD
        assert delivery.attempts == 3
        assert delivery.last_error == "HTTP 500"
        assert list(delivery.tries.values_list("status_code", flat=True)) == [500, 500, 500]

    @override_settings(WEBHOOK_MAX_ATTEMPTS=10, WEBHOOK_BREAKER_FAIL_MAX=2)
    def test_the_breaker_opens_and_then_fails_fast(self, receiver: Receiver) -> None:
        receiver.statuses = [500] * 10
        delivery = make_delivery(receiver)
        for _ in range(3):
            WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)
            webhooks.webhook_attempt(delivery_id=delivery.pk)

        assert len(receiver.requests) == 2
        delivery.refresh_from_db()
        assert "Circuit breaker open" in delivery.last_error
        assert delivery.subscription.breaker_opened_at is not None

    def test_an_early_duplicate_of_a_scheduled_retry_is_ignored(self, receiver: Receiver) -> None:
        delivery = make_delivery(receiver)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=WebhookDelivery.Status.RETRYING,
            next_attempt_at=timezone.now() + timedelta(minutes=1),
        )
        assert webhooks.webhook_attempt(delivery_id=delivery.pk) is None
        assert receiver.requests == []

    def test_an_inactive_subscription_dead_letters_without_a_request(
        self, receiver: Receiver
    ) -> None:
        delivery = make_delivery(receiver, is_active=False)
        assert webhooks.webhook_attempt(delivery_id=delivery.pk) is None
        delivery.refresh_from_db()
        assert delivery.status == WebhookDelivery.Status.DEAD
        assert receiver.requests == []

    @override_settings(WEBHOOK_ALLOW_PRIVATE_TARGETS=False)
    def test_the_target_is_checked_again_before_each_request(self, receiver: Receiver) -> None:
        with override_settings(WEBHOOK_ALLOW_PRIVATE_TARGETS=True):
            delivery = make_delivery(receiver)
        webhooks.webhook_attempt(delivery_id=delivery.pk)
        assert receiver.requests == []
        assert "private" in WebhookAttempt.objects.get(delivery=delivery).error

    def test_redirects_are_not_followed(self, receiver: Receiver) -> None:
        receiver.statuses = [302]
        delivery = make_delivery(receiver)
        assert webhooks.webhook_attempt(delivery_id=delivery.pk) is not None
        delivery.refresh_from_db()
        assert delivery.last_error == "HTTP 302"


class TestRetryAndSweep:
    def test_retry_restarts_a_dead_letter_and_closes_the_breaker(
        self, receiver: Receiver, eager_celery: None, django_capture_on_commit_callbacks: Any
    ) -> None:
        delivery = make_delivery(receiver)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=WebhookDelivery.Status.DEAD, attempts=5
        )
        WebhookSubscription.objects.filter(pk=delivery.subscription.pk).update(
            breaker_opened_at=timezone.now(), consecutive_failures=5
        )

        with django_capture_on_commit_callbacks(execute=True):
            webhooks.webhook_delivery_retry(delivery=delivery)

        delivery.refresh_from_db()
        assert delivery.status == WebhookDelivery.Status.DELIVERED
        assert delivery.attempts == 1
        assert delivery.subscription.breaker_opened_at is None
        assert len(receiver.requests) == 1

    def test_stalled_deliveries_are_enqueued_again(
        self,
        receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch,
        django_capture_on_commit_callbacks: Any,
    ) -> None:
        enqueued: list[Any] = []
        monkeypatch.setattr(
            deliver_webhooks, "apply_async", lambda args, **kw: enqueued.append(args[0])
        )
        stalled = make_delivery(receiver)
        WebhookDelivery.objects.filter(pk=stalled.pk).update(
            next_attempt_at=timezone.now() - timedelta(hours=1)
        )
        WebhookDeliveryFactory.create(
            subscription=stalled.subscription,
            event=make_event(USER_UPDATED),
            next_attempt_at=timezone.now(),
        )

        with django_capture_on_commit_callbacks(execute=True):
            assert webhooks.webhook_sweep_stalled() == 1

        assert enqueued == [[str(stalled.pk)]]


class TestBatch:
    def deliveries(self, receiver: Receiver, count: int) -> list[WebhookDelivery]:
        first = make_delivery(receiver)
        return [first] + [
            WebhookDeliveryFactory.create(subscription=first.subscription, event=make_event())
            for _ in range(count - 1)
        ]

    def test_each_due_delivery_is_posted_once_and_all_are_settled_together(
        self, receiver: Receiver
    ) -> None:
        done, not_due, ok, failing = self.deliveries(receiver, 4)
        WebhookDelivery.objects.filter(pk=done.pk).update(status=WebhookDelivery.Status.DELIVERED)
        WebhookDelivery.objects.filter(pk=not_due.pk).update(
            status=WebhookDelivery.Status.RETRYING,
            next_attempt_at=timezone.now() + timedelta(minutes=1),
        )
        receiver.statuses = [200, 500]

        retry_in = webhooks.webhook_attempt_batch(
            delivery_ids=[done.pk, not_due.pk, ok.pk, failing.pk]
        )

        assert list(retry_in) == [failing.pk]
        assert len(receiver.requests) == 2
        statuses = dict(WebhookDelivery.objects.values_list("pk", "status"))
        assert statuses == {
            done.pk: WebhookDelivery.Status.DELIVERED,
            not_due.pk: WebhookDelivery.Status.RETRYING,
            ok.pk: WebhookDelivery.Status.DELIVERED,
            failing.pk: WebhookDelivery.Status.RETRYING,
        }
        assert not WebhookDelivery.objects.filter(claim_token__isnull=False).exists()
        assert WebhookAttempt.objects.count() == 2

    def test_the_statements_of_a_batch_do_not_grow_with_its_size(
        self, receiver: Receiver, django_assert_num_queries: Any
    ) -> None:
        small, large = self.deliveries(receiver, 2), self.deliveries(receiver, 12)
        # The claim, the read; then one transaction (SAVEPOINT here, inside the test's
        # own): the attempts' INSERT, the delivered UPDATE, RELEASE.
        for batch in (small, large):
            with django_assert_num_queries(6):
                webhooks.webhook_attempt_batch(delivery_ids=[d.pk for d in batch])
        assert WebhookDelivery.objects.filter(status=WebhookDelivery.Status.DELIVERED).count() == 14

    @override_settings(WEBHOOK_MAX_ATTEMPTS=10, WEBHOOK_BREAKER_FAIL_MAX=2)
    def test_the_breaker_opens_mid_batch(self, receiver: Receiver) -> None:
        receiver.statuses = [500] * 10
        batch = self.deliveries(receiver, 5)

        retry_in = webhooks.webhook_attempt_batch(delivery_ids=[d.pk for d in batch])

        assert len(receiver.requests) == 2
        assert set(retry_in) == {d.pk for d in batch}
        errors = WebhookDelivery.objects.values_list("last_error", flat=True)
        assert sum("Circuit breaker open" in error for error in errors) == 3

    @override_settings(CELERY_TASK_SOFT_TIME_LIMIT=1, WEBHOOK_TIMEOUT_SECONDS=1)
    def test_no_request_starts_that_could_outlive_the_lease(self, receiver: Receiver) -> None:
        batch = self.deliveries(receiver, 3)

        retry_in = webhooks.webhook_attempt_batch(delivery_ids=[d.pk for d in batch])

        # Released untried, to be enqueued again at once; nothing recorded as an attempt.
        assert retry_in == {d.pk: 0.0 for d in batch}
        assert receiver.requests == []
        assert not WebhookAttempt.objects.exists()
        assert not WebhookDelivery.objects.filter(claimed_until__isnull=False).exists()
        assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {
            WebhookDelivery.Status.PENDING
        }

    def test_a_redelivered_message_takes_over_the_leases_of_a_lost_worker(
        self, receiver: Receiver
    ) -> None:
        batch = self.deliveries(receiver, 2)
        # Leased by an attempt whose worker was killed: the lease has a minute to run.
        leased_until = timezone.now() + timedelta(seconds=60)
        WebhookDelivery.objects.update(claimed_until=leased_until, claim_token=uuid.uuid4())
        ids = [d.pk for d in batch]

        assert webhooks.webhook_attempt_batch(delivery_ids=ids) == {}
        assert receiver.requests == []

        assert webhooks.webhook_attempt_batch(delivery_ids=ids, reclaim=True) == {}
        assert len(receiver.requests) == 2
        assert WebhookDelivery.objects.filter(status=WebhookDelivery.Status.DELIVERED).count() == 2


class TestConnections:
    def test_deliveries_to_one_endpoint_reuse_one_connection(self, receiver: Receiver) -> None:
        webhook_http.close_pools()
        first = make_delivery(receiver)
        second = WebhookDeliveryFactory.create(subscription=first.subscription, event=make_event())
        for delivery in (first, second):
            assert webhooks.webhook_attempt(delivery_id=delivery.pk) is None
        assert [request.status for request in receiver.requests] == [200, 200]
        assert receiver.requests[0].peer == receiver.requests[1].peer

    @override_settings(WEBHOOK_ALLOW_PRIVATE_TARGETS=False, WEBHOOK_TIMEOUT_SECONDS=1)
    def test_a_name_that_rebinds_to_loopback_is_never_connected_to_there(
        self, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """DNS rebinding: public for the checks, then loopback for anyone who asks again."""
        webhook_http.close_pools()
        real_getaddrinfo = socket.getaddrinfo
        answers = iter(["93.184.215.14", "93.184.215.14"])
        lookups: list[str] = []

        def resolver(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host != "rebind.example":
                return real_getaddrinfo(host, port, *args, **kwargs)
            address = next(answers, "127.0.0.1")
            lookups.append(address)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

        monkeypatch.setattr(socket, "getaddrinfo", resolver)
        port = urlsplit(receiver.url).port
        subscription = webhooks.webhook_subscription_create(
            url=f"http://rebind.example:{port}/hook", topics=[USER_CREATED], secret="s" * 20
        )
        delivery = WebhookDeliveryFactory.create(subscription=subscription, event=make_event())

        # Checked (public), so the request goes to the checked address, not a fresh lookup.
        assert webhooks.webhook_attempt(delivery_id=delivery.pk) is not None
        # The next attempt's check sees loopback and refuses it before any request.
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        assert webhooks.webhook_attempt(delivery_id=delivery.pk) is not None

        assert receiver.requests == []
        assert lookups == ["93.184.215.14", "93.184.215.14", "127.0.0.1"]
        errors = list(delivery.tries.order_by("number").values_list("error", flat=True))
        assert "private" not in errors[0]
        assert "private" in errors[1]


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_no_row_is_locked_while_a_request_is_in_flight(receiver: Receiver) -> None:
    receiver.slow_first = 20
    delivery = make_delivery(receiver)
    outcome: list[float | None] = []

    def attempt() -> None:
        try:
            outcome.append(webhooks.webhook_attempt(delivery_id=delivery.pk))
        finally:
            connection.close()

    worker = threading.Thread(target=attempt)
    worker.start()
    deadline = time.monotonic() + 20
    while not receiver.requests:
        assert time.monotonic() < deadline, "the request never reached the receiver"
        time.sleep(0.01)

    try:
        with transaction.atomic():
            # NOWAIT: an error at once if the attempt held either row.
            WebhookDelivery.objects.select_for_update(nowait=True).get(pk=delivery.pk)
            WebhookSubscription.objects.select_for_update(nowait=True).get(
                pk=delivery.subscription.pk
            )
        # A redelivered copy of the task finds the claim and posts nothing.
        assert webhooks.webhook_attempt(delivery_id=delivery.pk) is None
        assert len(receiver.requests) == 1
    except DatabaseError:
        pytest.fail("a row stayed locked while the request was in flight")
    finally:
        receiver.release.set()
        worker.join(timeout=30)

    assert outcome == [None]
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.DELIVERED
    assert delivery.claimed_until is None


@pytest.mark.rabbitmq
def test_a_retry_is_enqueued_on_a_fresh_connection_after_the_broker_closed_the_pooled_one(
    receiver: Receiver, rabbitmq: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # As after a broker restart: the connection the process pooled is one the broker has
    # closed, and the first publish on it fails; the publish tries once more, reconnected.
    queue = celery_app.amqp.queues["webhooks"]
    with celery_app.connection_for_write() as broker:
        queue.bind(broker.default_channel).declare()
        queue.bind(broker.default_channel).purge()
    delivery = make_delivery(receiver)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=WebhookDelivery.Status.DEAD)
    with django_capture_on_commit_callbacks(execute=True):
        webhooks.webhook_delivery_retry(delivery=delivery)
    rabbitmq.ctl("close_all_connections", "closed by the test")

    with django_capture_on_commit_callbacks(execute=True):
        webhooks.webhook_delivery_retry(delivery=delivery)

    depth = broker_queue_stats(url=settings.CELERY_BROKER_URL, queues=["webhooks"], timeout=5)
    assert depth["webhooks"] == 2
    with celery_app.connection_for_write() as broker:
        queue.bind(broker.default_channel).purge()
