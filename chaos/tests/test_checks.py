"""chaos.checks: which second copy of a webhook or an email a fault explains; what the
worker's crash owed and how late it was done."""

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from chaos.checks import (
    DELIVERY,
    GRACE_SECONDS,
    HANDLER_RUNS,
    Owed,
    Window,
    caught_up,
    crash_recovery,
    interrupted_delivery,
    owed_at_kill,
    welcome_emails,
)
from events.models import OutboxEvent, WebhookDelivery
from events.tests.factories import (
    OutboxEventFactory,
    WebhookAttemptFactory,
    WebhookDeliveryFactory,
    WebhookSubscriptionFactory,
)


def windows() -> list[Window]:
    return [
        Window("redis_killed", "all 2xx", injected=10.0, restored=19.0, recovered=19.5),
        Window("worker_killed", "all 2xx", injected=40.0, restored=49.0, recovered=49.5),
        Window("primary_restarted", "503", injected=60.0, restored=69.0, recovered=70.0),
    ]


def test_a_copy_first_received_while_a_delivery_could_be_cut_short_is_explained() -> None:
    assert interrupted_delivery(45.0, windows()) == "worker_killed"
    assert interrupted_delivery(70.0 + GRACE_SECONDS, windows()) == "primary_restarted"
    assert interrupted_delivery(60.0 - GRACE_SECONDS, windows()) == "primary_restarted"


def test_any_other_copy_is_not() -> None:
    assert interrupted_delivery(15.0, windows()) is None  # Redis cannot cut a delivery short
    assert interrupted_delivery(30.0, windows()) is None  # no fault at all
    assert interrupted_delivery(None, windows()) is None


def _email(directory: Path, name: str, to: str, subject: str, written: float) -> None:
    path = directory / name
    path.write_text(f"Subject: {subject}\nTo: {to}\n\nHello\n" + "-" * 79 + "\n")
    os.utime(path, (written, written))


def test_welcome_emails_are_counted_with_the_first_send_of_each(tmp_path: Path) -> None:
    epoch = 1_000_000.0
    _email(tmp_path, "a.log", "ann@example.com", "Welcome", epoch + 42.0)
    _email(tmp_path, "b.log", "ann@example.com", "Welcome", epoch + 47.0)
    _email(tmp_path, "c.log", "bob@example.com", "Welcome", epoch + 5.0)
    _email(tmp_path, "d.log", "bob@example.com", "Your email", epoch + 6.0)

    counts, first_sent = welcome_emails(tmp_path, epoch=epoch)

    assert counts == {"ann@example.com": 2, "bob@example.com": 1}
    assert first_sent == {"ann@example.com": 42.0, "bob@example.com": 5.0}
    # Ann's second copy is explained only because her first fell inside a cutting fault.
    assert interrupted_delivery(first_sent["ann@example.com"], windows()) == "worker_killed"


KILLED = 1_000_000.0
BOUND = 30.0


def test_a_delivery_due_at_the_kill_and_done_within_the_bound_passes() -> None:
    summary, check = crash_recovery(
        owed=[Owed(DELIVERY, done=KILLED + 29.0), Owed(HANDLER_RUNS, done=KILLED + 12.0)],
        killed_at=KILLED,
        bound=BOUND,
    )

    assert check.passed
    assert summary["recovery_s"] == 29.0
    assert summary["owed"] == {"handler_runs": 1, "deliveries_due": 1, "deliveries_on_backoff": 0}


def test_a_delivery_due_at_the_kill_and_done_31_s_later_fails() -> None:
    summary, check = crash_recovery(
        owed=[Owed(DELIVERY, done=KILLED + 31.0)], killed_at=KILLED, bound=BOUND
    )

    assert not check.passed
    assert summary["recovery_s"] == 31.0
    assert "1 webhook deliveries due" in check.detail
    assert "31.0 s after it was due" in check.detail


def test_a_handler_run_owed_at_the_kill_is_held_to_the_bound() -> None:
    _, check = crash_recovery(
        owed=[Owed(HANDLER_RUNS, done=KILLED + 40.0)], killed_at=KILLED, bound=BOUND
    )

    assert not check.passed


def test_a_delivery_on_backoff_is_held_to_its_own_schedule_plus_the_bound() -> None:
    on_time = Owed(DELIVERY, done=KILLED + 70.0, scheduled=KILLED + 60.0)

    summary, check = crash_recovery(owed=[on_time], killed_at=KILLED, bound=BOUND)

    assert check.passed
    assert summary["recovery_s"] == 10.0
    assert summary["last_done_after_kill_s"] == 70.0
    assert summary["owed"]["deliveries_on_backoff"] == 1
    assert "until 60.0 to 60.0 s after it" in check.detail


def test_a_delivery_done_more_than_the_bound_after_its_backoff_fails() -> None:
    late = Owed(DELIVERY, done=KILLED + 91.0, scheduled=KILLED + 60.0)

    summary, check = crash_recovery(owed=[late], killed_at=KILLED, bound=BOUND)

    assert not check.passed
    assert summary["recovery_s"] == 31.0


def test_a_backoff_that_ended_before_the_kill_leaves_the_delivery_due_at_the_kill() -> None:
    overdue = Owed(DELIVERY, done=KILLED + 31.0, scheduled=KILLED - 5.0)

    summary, check = crash_recovery(owed=[overdue], killed_at=KILLED, bound=BOUND)

    assert not check.passed
    assert summary["owed"]["deliveries_due"] == 1


def test_work_never_done_fails_even_unbounded() -> None:
    summary, check = crash_recovery(
        owed=[Owed(HANDLER_RUNS, done=KILLED + 1.0), Owed(DELIVERY, done=None)],
        killed_at=KILLED,
        bound=None,
    )

    assert not check.passed
    assert summary["recovery_s"] is None
    assert "1 of 2 never done" in check.detail


def test_without_a_bound_a_late_recovery_is_reported_and_passes() -> None:
    summary, check = crash_recovery(
        owed=[Owed(DELIVERY, done=KILLED + 613.8)], killed_at=KILLED, bound=None
    )

    assert check.passed
    assert summary["recovery_s"] == 613.8
    assert "reported, not bounded" in check.detail


@pytest.mark.django_db
def test_owed_at_kill_reads_each_deliverys_schedule_at_the_kill_from_its_attempts() -> None:
    killed = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    second = timedelta(seconds=1)
    subscription = WebhookSubscriptionFactory.create()

    def event(*, handled: datetime | None) -> OutboxEvent:
        return OutboxEventFactory.create(created_at=killed - 10 * second, handled_at=handled)

    def delivery(*, delivered: datetime | None) -> WebhookDelivery:
        return WebhookDeliveryFactory.create(
            subscription=subscription,
            event=event(handled=killed - 9 * second),
            delivered_at=delivered,
        )

    event(handled=killed + 5 * second)  # its handler runs owed
    event(handled=killed - second)  # handled before the kill
    OutboxEventFactory.create()  # after it
    delivery(delivered=killed - second)  # delivered before the kill
    delivery(delivered=killed + 8 * second)  # never tried before the kill
    waiting = delivery(delivered=killed + 70 * second)
    WebhookAttemptFactory.create(
        delivery=waiting, number=1, attempted_at=killed - 3 * second, retry_in_ms=63_000
    )
    overdue = delivery(delivered=killed + 9 * second)
    WebhookAttemptFactory.create(
        delivery=overdue, number=1, attempted_at=killed - 8 * second, retry_in_ms=2_000
    )
    # A later attempt (after the kill) is not the schedule the kill found.
    WebhookAttemptFactory.create(
        delivery=overdue, number=2, attempted_at=killed + 2 * second, retry_in_ms=4_000
    )

    owed = owed_at_kill(killed_at=killed.timestamp())

    at = killed.timestamp()
    assert sorted(owed, key=lambda item: (item.kind, item.done or 0.0)) == [
        Owed(DELIVERY, done=at + 8.0),
        Owed(DELIVERY, done=at + 9.0, scheduled=at - 6.0),
        Owed(DELIVERY, done=at + 70.0, scheduled=at + 60.0),
        Owed(HANDLER_RUNS, done=at + 5.0),
    ]


# caught_up closes the connections (the primary may have restarted): no test transaction.
@pytest.mark.django_db(transaction=True)
def test_a_delivery_waiting_on_its_backoff_is_not_behind_but_one_due_is() -> None:
    now = timezone.now()
    event = OutboxEventFactory.create(
        created_at=now - timedelta(seconds=60), handled_at=now - timedelta(seconds=59)
    )
    delivery = WebhookDeliveryFactory.create(
        event=event,
        status=WebhookDelivery.Status.RETRYING,
        created_at=now - timedelta(seconds=59),
        next_attempt_at=now + timedelta(seconds=60),
    )

    assert caught_up(older_than=2.0)

    delivery.next_attempt_at = now - timedelta(seconds=5)
    delivery.save()

    assert not caught_up(older_than=2.0)


@pytest.mark.django_db(transaction=True)
def test_an_event_unhandled_for_longer_than_the_margin_is_behind() -> None:
    OutboxEventFactory.create(created_at=timezone.now())

    assert caught_up(older_than=2.0)

    OutboxEvent.objects.update(created_at=timezone.now() - timedelta(seconds=5))

    assert not caught_up(older_than=2.0)
