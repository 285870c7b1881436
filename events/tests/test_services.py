"""events.services: publishing inside the change's transaction, relay, sweep, handling once."""

import threading
import uuid
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.core import mail
from django.db import connection, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError
from rest_framework.test import APIClient

from config.celery import app as celery_app
from core.messaging.broker_probe import broker_queue_stats
from events import services as outbox
from events.models import HandledEvent, OutboxEvent
from events.registry import handler_names
from events.tasks import handle_events
from events.tests.conftest import wait_for
from events.tests.factories import OutboxEventFactory
from events.webhooks import FAN_OUT
from users import services as user_services
from users.handlers import CACHE_INVALIDATION, WELCOME_EMAIL
from users.models import User
from users.tests.factories import UserFactory
from users.topics import USER_CREATED, USER_DEACTIVATED, USER_UPDATED

pytestmark = pytest.mark.django_db

STRONG = "violet-harbour-lantern-42"


def only_event(topic: str) -> OutboxEvent:
    [event] = OutboxEvent.objects.filter(topic=topic)
    return event


@pytest.mark.rabbitmq
class TestRelayConfirmedByRabbitMQ:
    """Publisher confirms: the relay marks an event published only once the broker has it."""

    @pytest.fixture
    def events_queue(self, rabbitmq: Any) -> Any:
        # Declared as a worker would; no worker reads it in this run, so what the relay
        # publishes stays there.
        queue = celery_app.amqp.queues["events"]
        with celery_app.connection_for_write() as connection:
            queue.bind(connection.default_channel).declare()
            queue.bind(connection.default_channel).purge()
        yield rabbitmq
        with celery_app.connection_for_write() as connection:
            queue.bind(connection.default_channel).purge()

    @staticmethod
    def refusing_publishes(rabbitmq: Any) -> Any:
        """A full queue that rejects new messages: the broker answers a publish with a nack."""
        policy = '{"max-length": 0, "overflow": "reject-publish"}'
        rabbitmq.ctl("set_policy", "--apply-to", "queues", "refuse", "^events$", policy)
        wait_for(lambda: "refuse" in rabbitmq.ctl("list_queues", "name", "policy"))
        return rabbitmq

    @staticmethod
    def depth() -> int:
        return broker_queue_stats(url=settings.CELERY_BROKER_URL, queues=["events"], timeout=5)[
            "events"
        ]

    def test_a_refused_publish_leaves_the_event_unpublished(self, events_queue: Any) -> None:
        payload = {"id": str(uuid.uuid4()), "updated_at": timezone.now().isoformat()}
        filler = OutboxEventFactory.create(topic=USER_UPDATED, payload=payload)
        event = OutboxEventFactory.create(topic=USER_UPDATED, payload=payload)
        rabbitmq = self.refusing_publishes(events_queue)
        try:
            # A quorum queue enforces its length limit once a message is past it.
            outbox.event_relay(events=[filler])
            assert self.depth() == 1

            assert outbox.event_relay(events=[event]) is False
        finally:
            rabbitmq.ctl("clear_policy", "refuse")
            wait_for(lambda: "refuse" not in rabbitmq.ctl("list_queues", "name", "policy"))

        event.refresh_from_db()
        assert event.published_at is None
        assert event.last_error.startswith("OperationalError")
        assert self.depth() == 1
        assert outbox.event_relay(events=[event]) is True
        assert self.depth() == 2

    def test_a_confirmed_publish_is_in_the_queue_when_marked(self, events_queue: Any) -> None:
        payload = {"id": str(uuid.uuid4()), "updated_at": timezone.now().isoformat()}
        event = OutboxEventFactory.create(topic=USER_UPDATED, payload=payload)

        assert outbox.event_relay(events=[event]) is True

        event.refresh_from_db()
        assert event.published_at is not None
        assert self.depth() == 1


class TestPublishFromUserServices:
    def test_user_create_writes_user_created_without_the_password(self) -> None:
        user = user_services.user_create(email="Ann@Example.com", password=STRONG)

        event = only_event(USER_CREATED)
        assert event.aggregate_id == str(user.pk)
        assert event.schema_version == 1
        assert event.published_at is None  # relayed only after commit
        assert event.payload["email"] == "ann@example.com"
        assert event.payload["is_active"] is True
        assert "password" not in event.payload
        assert user.password not in str(event.payload)

    def test_a_failed_create_leaves_no_event(self) -> None:
        UserFactory.create(email="taken@example.com")
        with pytest.raises(Exception, match="already exists"):
            user_services.user_create(email="taken@example.com", password=STRONG)
        assert not OutboxEvent.objects.exists()

    def test_update_deactivate_and_password_change_publish_their_topics(self) -> None:
        user = UserFactory.create(display_name="Old")

        user_services.user_update(user=user, data={"display_name": "New"})
        user_services.user_set_password(user=user, password=STRONG)
        user_services.user_deactivate(user=user)
        user_services.user_deactivate(user=user)  # no change, no event

        updates = list(OutboxEvent.objects.filter(topic=USER_UPDATED).order_by("created_at"))
        assert [e.payload["changed"] for e in updates] == [["display_name"], ["password"]]
        assert updates[0].payload["display_name"] == "New"
        deactivated = only_event(USER_DEACTIVATED)
        assert deactivated.payload["is_active"] is False

    @pytest.mark.django_db(transaction=True)
    def test_publishing_outside_a_transaction_is_refused(self) -> None:
        with pytest.raises(RuntimeError, match="inside the transaction"):
            outbox.event_publish(topic=USER_CREATED, aggregate_id="x", payload={})
        assert not OutboxEvent.objects.exists()

    def test_an_unknown_topic_is_refused(self) -> None:
        with pytest.raises(KeyError), transaction.atomic():
            outbox.event_publish(topic="user.renamed", aggregate_id="x", payload={})


class TestRelay:
    def test_on_commit_the_event_is_published_and_handled(
        self, eager_celery: None, django_capture_on_commit_callbacks: Any
    ) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            user = user_services.user_create(email="ann@example.com", password=STRONG)

        event = only_event(USER_CREATED)
        assert event.published_at is not None
        assert event.attempts == 1
        assert [m.to for m in mail.outbox] == [[user.email]]
        handlers = set(HandledEvent.objects.values_list("handler", flat=True))
        assert handlers == {WELCOME_EMAIL, FAN_OUT, CACHE_INVALIDATION}

    def test_a_broker_failure_is_recorded_and_swallowed(
        self, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
    ) -> None:
        def broker_down(*args: Any, **kwargs: Any) -> None:
            raise OperationalError("Error 111 connecting to 127.0.0.1:9. Connection refused.")

        monkeypatch.setattr(handle_events, "apply_async", broker_down)
        with django_capture_on_commit_callbacks(execute=True):
            user = user_services.user_create(email="ann@example.com", password=STRONG)

        assert User.objects.filter(pk=user.pk).exists()
        event = only_event(USER_CREATED)
        assert event.published_at is None
        assert event.attempts == 1
        assert event.last_error.startswith("OperationalError: Error 111")
        assert outbox.event_relay(events=[event]) is False
        event.refresh_from_db()
        assert event.attempts == 2

    @pytest.mark.django_db(transaction=True)
    def test_in_process_a_failing_handler_does_not_break_sign_up(
        self, eager_celery: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # `make run`: no broker, handlers run inside the request that committed the user.
        def smtp_down(*args: Any, **kwargs: Any) -> None:
            raise ConnectionRefusedError("smtp down")

        monkeypatch.setattr("users.handlers.send_mail", smtp_down)
        response = APIClient().post(
            "/api/v1/users/", {"email": "ann@example.com", "password": STRONG}, format="json"
        )

        assert response.status_code == 201
        event = only_event(USER_CREATED)
        assert event.published_at is not None
        handlers = set(HandledEvent.objects.values_list("handler", flat=True))
        assert handlers == {FAN_OUT, CACHE_INVALIDATION}

    def test_a_late_second_hand_over_is_handled_once(self, eager_celery: None) -> None:
        # The relay and the sweeper may both publish an event the relay was slow with.
        payload = {"id": str(uuid.uuid4()), "updated_at": timezone.now().isoformat()}
        event = OutboxEventFactory.create(topic=USER_UPDATED, payload=payload)
        assert outbox.event_relay(events=[event]) is True
        published_at = OutboxEvent.objects.get(pk=event.pk).published_at
        assert published_at is not None
        assert outbox.event_relay(events=[event]) is True
        handled = list(HandledEvent.objects.values_list("handler", flat=True))
        assert sorted(handled) == sorted(handler_names(USER_UPDATED))
        # The first hand-over's record stands.
        assert OutboxEvent.objects.get(pk=event.pk).published_at == published_at


class TestSweep:
    def test_publishes_only_events_older_than_the_grace_period(self, eager_celery: None) -> None:
        old = OutboxEventFactory.create(
            topic=USER_UPDATED, created_at=timezone.now() - timedelta(minutes=1)
        )
        fresh = OutboxEventFactory.create(topic=USER_UPDATED)

        assert outbox.outbox_sweep(older_than=timedelta(seconds=5)) == 1

        old.refresh_from_db()
        fresh.refresh_from_db()
        assert old.published_at is not None
        assert fresh.published_at is None
        assert HandledEvent.objects.filter(event_id=old.pk, handler=FAN_OUT).exists()

    def test_an_event_nobody_handles_does_not_block_the_rest(self, eager_celery: None) -> None:
        created_at = timezone.now() - timedelta(minutes=1)
        orphan = OutboxEventFactory.create(topic="user.renamed-long-ago", created_at=created_at)
        later = OutboxEventFactory.create(topic=USER_UPDATED, created_at=created_at)

        assert outbox.outbox_sweep(older_than=timedelta(0)) == 1

        orphan.refresh_from_db()
        later.refresh_from_db()
        assert orphan.published_at is None
        assert "no handlers" in orphan.last_error
        assert later.published_at is not None

    def test_works_in_batches(self, eager_celery: None) -> None:
        created_at = timezone.now() - timedelta(minutes=1)
        OutboxEventFactory.create_batch(5, topic=USER_UPDATED, created_at=created_at)
        assert outbox.outbox_sweep(older_than=timedelta(0), batch_size=2) == 5
        assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()

    def test_stops_at_a_broker_failure_and_records_it(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def broker_down(*args: Any, **kwargs: Any) -> None:
            raise OperationalError("connection refused")

        monkeypatch.setattr(handle_events, "apply_async", broker_down)
        created_at = timezone.now() - timedelta(minutes=1)
        OutboxEventFactory.create_batch(3, topic=USER_UPDATED, created_at=created_at)
        assert outbox.outbox_sweep(older_than=timedelta(0)) == 0
        assert sorted(OutboxEvent.objects.values_list("attempts", flat=True)) == [0, 0, 1]

    @pytest.mark.django_db(transaction=True)
    def test_skips_rows_another_relay_has_claimed(self, services: Any, eager_celery: None) -> None:
        created_at = timezone.now() - timedelta(minutes=1)
        claimed, free = OutboxEventFactory.create_batch(
            2, topic=USER_UPDATED, created_at=created_at
        )
        conninfo = psycopg.conninfo.make_conninfo(
            services["DATABASE_URL"], dbname=connection.settings_dict["NAME"]
        )
        locked = threading.Event()
        done = threading.Event()

        def other_relay() -> None:
            with psycopg.connect(conninfo) as other, other.transaction():
                other.execute(
                    "SELECT id FROM events_outboxevent WHERE id = %s FOR UPDATE", [claimed.pk]
                )
                locked.set()
                done.wait(timeout=10)

        thread = threading.Thread(target=other_relay)
        thread.start()
        try:
            assert locked.wait(timeout=10)
            assert outbox.outbox_sweep(older_than=timedelta(0)) == 1
        finally:
            done.set()
            thread.join()
        claimed.refresh_from_db()
        free.refresh_from_db()
        assert claimed.published_at is None
        assert free.published_at is not None


class TestRedispatchUnhandled:
    """A published event whose message was lost is handed over again, within bounds."""

    def published(self, *, seconds_ago: float, **fields: Any) -> OutboxEvent:
        at = timezone.now() - timedelta(seconds=seconds_ago)
        payload = {"id": str(uuid.uuid4()), "updated_at": at.isoformat()}
        return OutboxEventFactory.create(
            topic=USER_UPDATED, payload=payload, published_at=at, **fields
        )

    def test_handling_every_handler_marks_the_event_handled(self, eager_celery: None) -> None:
        event = self.published(seconds_ago=0)
        assert outbox.event_handle_batch(event_ids=[event.pk]) == {}
        event.refresh_from_db()
        assert event.handled_at is not None

    def test_a_lost_message_is_handed_over_again(self, settings: Any, eager_celery: None) -> None:
        settings.EVENTS_REDISPATCH_AFTER_SECONDS = 60
        lost = self.published(seconds_ago=61)
        recent = self.published(seconds_ago=30)
        handled = self.published(seconds_ago=600, handled_at=timezone.now())
        given_up = self.published(seconds_ago=600, redispatches=settings.EVENTS_REDISPATCH_MAX)

        assert outbox.outbox_redispatch_unhandled() == 1

        lost.refresh_from_db()
        assert lost.handled_at is not None
        assert lost.redispatches == 1
        assert sorted(
            HandledEvent.objects.filter(event_id=lost.pk).values_list("handler", flat=True)
        ) == sorted(handler_names(USER_UPDATED))
        for untouched in (recent, handled, given_up):
            assert not HandledEvent.objects.filter(event_id=untouched.pk).exists()

    def test_a_handler_that_keeps_failing_is_retried_a_bounded_number_of_times(
        self, settings: Any, eager_celery: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        settings.EVENTS_REDISPATCH_AFTER_SECONDS = 0

        def smtp_down(*args: Any, **kwargs: Any) -> None:
            raise ConnectionRefusedError("smtp down")

        monkeypatch.setattr("users.handlers.send_mail", smtp_down)
        event = self.published(seconds_ago=1)
        event.topic = USER_CREATED
        event.save(update_fields=["topic"])
        for _ in range(settings.EVENTS_REDISPATCH_MAX + 2):
            outbox.outbox_redispatch_unhandled()
        event.refresh_from_db()
        assert event.handled_at is None
        assert event.redispatches == settings.EVENTS_REDISPATCH_MAX


def created_event(email: str = "ann@example.com") -> OutboxEvent:
    return OutboxEventFactory.create(
        topic=USER_CREATED, payload={"id": str(uuid.uuid4()), "email": email}
    )


class TestHandle:
    def test_runs_each_handler_once_per_event(self) -> None:
        events = [created_event(f"u{n}@example.com") for n in range(3)]
        ids = [event.pk for event in events]

        assert outbox.event_handle_batch(event_ids=ids) == {}
        assert outbox.event_handle_batch(event_ids=ids) == {}

        assert sorted(message.to[0] for message in mail.outbox) == [
            "u0@example.com",
            "u1@example.com",
            "u2@example.com",
        ]
        assert HandledEvent.objects.count() == 3 * len(handler_names(USER_CREATED))
        assert not OutboxEvent.objects.filter(handled_at__isnull=True).exists()

    def test_a_batch_costs_the_same_statements_as_one_event(
        self, django_assert_num_queries: Any
    ) -> None:
        def updated() -> OutboxEvent:
            user = UserFactory.create()
            return OutboxEventFactory.create(
                topic=USER_UPDATED, aggregate_id=str(user.pk), payload={"id": str(user.pk)}
            )

        one = [updated().pk]
        many = [updated().pk for _ in range(20)]
        # The read; the fan-out (SAVEPOINT, the handled-event insert, its deliveries and the
        # subscriptions read, RELEASE); the cache invalidation (SAVEPOINT, the insert, the
        # versions read, RELEASE); the handled-at update.
        with django_assert_num_queries(11):
            outbox.event_handle_batch(event_ids=one)
        with django_assert_num_queries(11):
            outbox.event_handle_batch(event_ids=many)

    def test_an_event_a_handler_fails_on_fails_alone(self, monkeypatch: pytest.MonkeyPatch) -> None:
        good, bad = created_event("good@example.com"), created_event("bad@example.com")

        def refuse_bad(*, user_ids: list[str]) -> None:
            if bad.payload["id"] in user_ids:
                raise ValueError("poisoned")

        monkeypatch.setattr("users.handlers.user_cache_invalidate_from_events", refuse_bad)

        failures = outbox.event_handle_batch(event_ids=[good.pk, bad.pk])

        assert list(failures) == [bad]
        assert list(failures[bad]) == [CACHE_INVALIDATION]
        handled = set(HandledEvent.objects.values_list("event_id", "handler"))
        assert (good.pk, CACHE_INVALIDATION) in handled
        assert (bad.pk, CACHE_INVALIDATION) not in handled
        assert {(bad.pk, WELCOME_EMAIL), (bad.pk, FAN_OUT)} <= handled
        good.refresh_from_db()
        bad.refresh_from_db()
        assert good.handled_at is not None
        assert bad.handled_at is None

    def test_events_left_when_the_batch_runs_out_of_time_fail_unrun(self, settings: Any) -> None:
        # No time at all: the one-by-one pass (the welcome email's) runs nothing.
        settings.CELERY_TASK_SOFT_TIME_LIMIT = 0
        events = [created_event(f"u{n}@example.com") for n in range(2)]

        failures = outbox.event_handle_batch(event_ids=[event.pk for event in events])

        assert mail.outbox == []
        assert set(failures) == set(events)
        assert all(isinstance(failed[WELCOME_EMAIL], TimeoutError) for failed in failures.values())
        # The handlers that take a whole batch at once still ran.
        assert HandledEvent.objects.filter(handler=FAN_OUT).count() == 2

    def test_a_failing_handler_records_nothing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        event = created_event()

        def smtp_down(*args: Any, **kwargs: Any) -> None:
            raise ConnectionRefusedError("smtp down")

        monkeypatch.setattr("users.handlers.send_mail", smtp_down)
        failures = outbox.event_handle_batch(event_ids=[event.pk])
        assert isinstance(failures[event][WELCOME_EMAIL], ConnectionRefusedError)
        assert not HandledEvent.objects.filter(event_id=event.pk, handler=WELCOME_EMAIL).exists()

    def test_a_missing_event_is_skipped(self) -> None:
        assert outbox.event_handle_batch(event_ids=[uuid.uuid4()]) == {}

    def test_an_event_of_a_topic_nobody_handles_fails_alone(self) -> None:
        known = created_event()
        orphan = OutboxEventFactory.create(topic="user.renamed")

        failures = outbox.event_handle_batch(event_ids=[known.pk, orphan.pk])

        assert list(failures) == [orphan]
        assert HandledEvent.objects.filter(event_id=known.pk).count() == len(
            handler_names(USER_CREATED)
        )

    def test_redispatch_runs_only_the_handlers_that_did_not_finish(
        self, eager_celery: None
    ) -> None:
        event = created_event()
        HandledEvent.objects.record(event_ids=[event.pk], handler=WELCOME_EMAIL, using="default")

        outbox.event_redispatch(event=event)

        assert mail.outbox == []
        assert HandledEvent.objects.filter(event_id=event.pk, handler=FAN_OUT).exists()
        assert event.published_at is not None
