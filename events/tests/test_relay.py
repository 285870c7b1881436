"""events.relay: committed events gathered by a thread into one broker message per batch."""

import base64
import json
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings

from events.models import OutboxEvent
from events.relay import BatchingRelay
from events.tests.conftest import wait_for
from users import services as user_services
from users.tests.factories import UserFactory
from users.topics import USER_UPDATED


class Recorder:
    """A flush that records its batches and lets a test wait for them."""

    def __init__(self, *, fail_first: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.fail_first = fail_first
        self.changed = threading.Condition()
        self.released = threading.Event()
        self.released.set()

    def __call__(self, batch: list[str]) -> None:
        with self.changed:
            self.batches.append(batch)
            self.changed.notify_all()
        self.released.wait()
        if self.fail_first and len(self.batches) == 1:
            raise RuntimeError("broker down")

    def wait(self, count: int) -> list[list[str]]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.batches) >= count, timeout=20)
            return list(self.batches)


def relay(
    flush: Recorder, *, linger: float = 3600, max_size: int = 3, capacity: int = 100
) -> BatchingRelay[str]:
    # A linger of an hour: a batch ends only when full or when the relay stops, so what a
    # batch holds never depends on the machine's speed.
    return BatchingRelay(
        name="test-relay",
        flush=flush,
        linger=lambda: linger,
        max_size=lambda: max_size,
        capacity=capacity,
    )


class TestBatching:
    def test_items_are_flushed_together_up_to_the_batch_size(self) -> None:
        flush = Recorder()
        subject = relay(flush, max_size=2)
        for item in "abcde":
            subject.submit(item)

        assert flush.wait(2) == [["a", "b"], ["c", "d"]]
        subject.stop()
        assert flush.batches == [["a", "b"], ["c", "d"], ["e"]]

    def test_stopping_flushes_what_the_relay_holds(self) -> None:
        flush = Recorder()
        subject = relay(flush)
        subject.submit("a")
        subject.stop()

        assert flush.batches == [["a"]]

    def test_with_no_linger_an_item_is_flushed_without_waiting_for_others(self) -> None:
        flush = Recorder()
        subject = relay(flush, linger=0, max_size=50)
        subject.submit("a")

        assert flush.wait(1) == [["a"]]
        subject.stop()

    def test_a_failed_flush_does_not_stop_the_relay(self) -> None:
        flush = Recorder(fail_first=True)
        subject = relay(flush, max_size=1)
        subject.submit("a")
        subject.submit("b")

        assert flush.wait(2) == [["a"], ["b"]]
        subject.stop()

    def test_while_a_flush_hangs_items_beyond_the_capacity_are_refused(self) -> None:
        flush = Recorder()
        flush.released.clear()  # the broker timing out
        subject = relay(flush, max_size=1, capacity=2)
        assert subject.submit("a")
        flush.wait(1)

        assert subject.submit("b")
        assert subject.submit("c")
        assert not subject.submit("d")
        flush.released.set()
        subject.stop()
        assert flush.batches == [["a"], ["b"], ["c"]]

    def test_a_forked_child_relays_with_a_thread_of_its_own(self) -> None:
        read_end, write_end = os.pipe()

        def to_pipe(batch: list[str]) -> None:
            os.write(write_end, json.dumps(batch).encode() + b"\n")

        subject: BatchingRelay[str] = BatchingRelay(
            name="test-relay", flush=to_pipe, linger=lambda: 3600, max_size=lambda: 10, capacity=10
        )
        subject.submit("before the fork")
        pid = os.fork()
        if pid == 0:  # the child: the parent's thread does not exist here
            try:
                subject.submit("in the child")
                subject.stop()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        subject.stop()
        os.close(write_end)
        with os.fdopen(read_end) as lines:
            batches = [json.loads(line) for line in lines]

        assert sorted(batches) == [["before the fork"], ["in the child"]]


@pytest.fixture
def events_queue(services: dict[str, str]) -> Iterator[redis.Redis]:
    """The broker's events queue, empty, with no worker reading it."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete("events")
    yield client
    client.delete("events")


@pytest.mark.django_db(transaction=True)
def test_committed_events_reach_the_broker_as_one_message_and_are_marked(
    events_queue: redis.Redis, settings: Any
) -> None:
    settings.EVENTS_RELAY_LINGER_SECONDS = 3600
    settings.EVENTS_BATCH_SIZE = 3
    user = UserFactory.create()
    # Each update commits on its own, as three requests would.
    for name in ("One", "Two", "Three"):
        user = user_services.user_update(user=user, data={"display_name": name})
    events = OutboxEvent.objects.filter(topic=USER_UPDATED)

    wait_for(lambda: not events.filter(published_at__isnull=True).exists(), what="the relay")

    assert events.count() == 3
    assert set(events.values_list("attempts", flat=True)) == {1}
    [message] = events_queue.lrange("events", 0, -1)
    envelope = json.loads(message)
    assert envelope["headers"]["task"] == "events.tasks.handle_events"
    args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
    assert sorted(args[0]) == sorted(str(pk) for pk in events.values_list("pk", flat=True))
