"""What the chaos run checks at the end, with everything back.

Needs Django set up (chaos/run.py does it against the run's primary): the database is
read through the models and the handler registry, the one description of which
handlers each event owes.
"""

import email
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chaos.load import Response

# A non-2xx answer is blamed on a fault if it overlaps the fault's window: from injection
# until readiness is back, plus this long for requests already queued behind it.
GRACE_SECONDS = 2.0
PRIMARY_FAULT = "primary_restarted"
MAX_503_SECONDS = 3.0


@dataclass
class Window:
    """When a fault was injected, undone, and the service ready again (run seconds)."""

    name: str
    expect: str
    injected: float
    restored: float = 0.0
    recovered: float = 0.0

    def overlaps(self, response: Response) -> bool:
        """Whether the request was in flight during the fault."""
        return response.started <= self.recovered + GRACE_SECONDS and (
            response.finished >= self.injected
        )


@dataclass
class Check:
    """One pass/fail line of the summary."""

    name: str
    passed: bool
    detail: str


def cause(response: Response, windows: list[Window]) -> str:
    """The fault(s) active while a request was in flight, or "none"."""
    names = [window.name for window in windows if window.overlaps(response)]
    return "+".join(names) or "none"


def allowed(response: Response, blamed: str) -> bool:
    """The pass rule: 2xx, or a quick 503 while the primary was down."""
    if 200 <= response.status < 300:
        return True
    return (
        response.status == 503
        and PRIMARY_FAULT in blamed.split("+")
        and response.seconds < MAX_503_SECONDS
    )


def status_class(status: int) -> str:
    """ "2xx", "4xx", ... or "no_answer" for a request that got no HTTP response."""
    return f"{status // 100}xx" if status else "no_answer"


def response_checks(
    responses: list[Response], windows: list[Window]
) -> tuple[dict[str, Any], list[Check]]:
    """Requests by status class, non-2xx by cause; the checks on them."""
    by_class = Counter(status_class(response.status) for response in responses)
    by_kind = Counter(response.kind for response in responses)
    failures: Counter[tuple[str, int, str, str]] = Counter()
    slowest: dict[tuple[str, int, str, str], float] = {}
    unexpected = 0
    for response in responses:
        if 200 <= response.status < 300:
            continue
        blamed = cause(response, windows)
        key = (blamed, response.status, response.code, response.kind)
        failures[key] += 1
        slowest[key] = max(slowest.get(key, 0.0), response.seconds)
        unexpected += not allowed(response, blamed)
    non_2xx = [
        {
            "cause": key[0],
            "status": key[1],
            "code": key[2],
            "kind": key[3],
            "count": count,
            "max_seconds": round(slowest[key], 3),
        }
        for key, count in sorted(failures.items())
    ]
    seconds_503 = [response.seconds for response in responses if response.status == 503]
    max_503 = round(max(seconds_503, default=0.0), 3)
    summary = {
        "sent": len(responses),
        "by_class": dict(sorted(by_class.items())),
        "by_kind": dict(sorted(by_kind.items())),
        "non_2xx": non_2xx,
        "max_503_seconds": max_503,
    }
    checks = [
        Check(
            "responses",
            unexpected == 0,
            f"{unexpected} non-2xx answers outside the rule (only 503 while the primary is "
            f"down, each under {MAX_503_SECONDS:.0f} s)",
        ),
        Check("max_503_latency", max_503 < MAX_503_SECONDS, f"slowest 503: {max_503} s"),
    ]
    return summary, checks


def backlog() -> dict[str, int]:
    """What is still owed: unpublished events, handler runs, webhook deliveries."""
    from events.models import HandledEvent, OutboxEvent, WebhookDelivery
    from events.registry import handler_names

    by_topic = Counter(OutboxEvent.objects.values_list("topic", flat=True))
    owed = sum(count * len(handler_names(topic)) for topic, count in by_topic.items())
    return {
        "outbox_unpublished": OutboxEvent.objects.filter(published_at__isnull=True).count(),
        "handler_runs_missing": owed - HandledEvent.objects.count(),
        "webhooks_undelivered": WebhookDelivery.objects.exclude(
            status=WebhookDelivery.Status.DELIVERED
        ).count(),
    }


def wait_drained(*, bound: float, queued: Any) -> dict[str, Any]:
    """Poll until nothing is owed (and the broker is empty), at most `bound` seconds.

    Returns the seconds it took the outbox backlog, then everything, to reach zero
    (None if it did not within the bound) and what was left.
    """
    started = time.monotonic()
    outbox_zero: float | None = None
    settled: float | None = None
    at_start = left = backlog()
    while time.monotonic() - started < bound:
        left = backlog()
        elapsed = round(time.monotonic() - started, 2)
        if outbox_zero is None and left["outbox_unpublished"] == 0:
            outbox_zero = elapsed
        if not any(left.values()) and queued() == 0:
            settled = elapsed
            break
        time.sleep(0.5)
    return {
        "bound_s": bound,
        "outbox_zero_s": outbox_zero,
        "settled_s": settled,
        "at_stop": at_start,
        "left": left,
    }


def welcome_emails(directory: Path, *, epoch: float) -> tuple[Counter[str], dict[str, float]]:
    """Welcome emails written by the file backend, per recipient, and when the first one to
    each recipient was written, in seconds since `epoch` (Unix time)."""
    found: Counter[str] = Counter()
    first_sent: dict[str, float] = {}
    for path in directory.glob("*.log"):
        # The backend writes one file per connection, and sends one email per connection.
        written = path.stat().st_mtime - epoch
        for chunk in path.read_text().split("-" * 79):
            if chunk.strip():
                message = email.message_from_string(chunk.strip())
                if message["Subject"] == "Welcome":
                    address = str(message["To"])
                    found[address] += 1
                    first_sent[address] = min(first_sent.get(address, written), written)
    return found, first_sent


def _sample(items: list[Any]) -> str:
    return f"{len(items)}" + (f" (e.g. {items[:3]})" if items else "")


# Faults that can end a webhook delivery after its POST but before the delivery's success
# is committed (the worker killed, the database gone): the retry posts again, with the same
# X-Webhook-Id, which receivers dedupe on (docs/events.md). No other duplicate is allowed.
# A cut broker connection is one too: the broker hands the tasks the worker was running
# (unacknowledged) to it again while the first run goes on.
INTERRUPTING_FAULTS = frozenset({"worker_killed", "broker_connections_cut", PRIMARY_FAULT})
WORKER_FAULT = "worker_killed"


def interrupted_delivery(first_arrival: float | None, windows: list[Window]) -> str | None:
    """The fault during which a webhook first arrived (or an email was first written), if
    it can explain a second copy: the effect happened, then the transaction recording it
    never committed."""
    if first_arrival is None:
        return None
    for window in windows:
        if window.name in INTERRUPTING_FAULTS and (
            window.injected - GRACE_SECONDS <= first_arrival <= window.recovered + GRACE_SECONDS
        ):
            return window.name
    return None


def data_checks(
    *,
    responses: list[Response],
    emails: Counter[str],
    email_first_sent: dict[str, float],
    webhooks: Counter[str],
    webhook_first_arrivals: dict[str, float],
    windows: list[Window],
    bad_signatures: int,
    drain: dict[str, Any],
) -> tuple[dict[str, Any], list[Check]]:
    """The database against the responses, the email files and the receiver."""
    from events.models import HandledEvent, OutboxEvent, WebhookDelivery
    from events.registry import handler_names
    from users.models import User
    from users.topics import USER_CREATED

    signed_up = {r.email for r in responses if r.kind == "signup" and r.status == 201}
    users = dict(User.objects.values_list("email", "pk"))
    missing_users = sorted(signed_up - set(users))

    events = list(OutboxEvent.objects.values_list("pk", "topic", "aggregate_id", "payload"))
    created = Counter(aggregate for _, topic, aggregate, _ in events if topic == USER_CREATED)
    user_ids = {str(pk) for pk in users.values()}
    wrong_created = sorted({pk for pk in user_ids if created[pk] != 1} | (set(created) - user_ids))

    handled = Counter(HandledEvent.objects.values_list("event_id", "handler"))
    owed = {(pk, name) for pk, topic, _, _ in events for name in handler_names(topic)}
    not_handled = sorted(str(key) for key in owed - set(handled))
    not_once = sorted(str(key) for key, count in handled.items() if count != 1 or key not in owed)

    welcome_to = Counter(
        str(payload["email"]) for _, topic, _, payload in events if topic == USER_CREATED
    )
    resent = {
        address: interrupted_delivery(email_first_sent.get(address), windows)
        for address, count in emails.items()
        if count > 1
    }
    wrong_emails = sorted(
        address
        for address in set(welcome_to) | set(emails)
        if emails[address] == 0
        or address not in welcome_to
        or (emails[address] > 1 and resent[address] is None)
    )

    event_ids = {str(pk) for pk, _, _, _ in events}
    redelivered = {
        event_id: interrupted_delivery(webhook_first_arrivals.get(event_id), windows)
        for event_id, count in webhooks.items()
        if count > 1
    }
    wrong_webhooks = sorted(
        event_id
        for event_id in event_ids | set(webhooks)
        if webhooks[event_id] == 0
        or event_id not in event_ids
        or (webhooks[event_id] > 1 and redelivered[event_id] is None)
    )
    undelivered = WebhookDelivery.objects.exclude(status=WebhookDelivery.Status.DELIVERED).count()

    summary = {
        "signups_201": len(signed_up),
        "users": len(users),
        "events": len(events),
        "events_by_topic": dict(sorted(Counter(topic for _, topic, _, _ in events).items())),
        "handler_runs": sum(handled.values()),
        "welcome_emails": sum(emails.values()),
        "welcome_email_resends_by_fault": dict(
            Counter(fault or "unexplained" for fault in resent.values())
        ),
        "webhooks_received": sum(webhooks.values()),
        "webhook_duplicates": sum(count - 1 for count in webhooks.values() if count > 1),
        "webhook_redeliveries_by_fault": dict(
            Counter(fault or "unexplained" for fault in redelivered.values())
        ),
        "drain": drain,
    }
    checks = [
        Check(
            "signups_persisted",
            not missing_users,
            f"201s missing from the database: {_sample(missing_users)}",
        ),
        Check(
            "one_created_event_per_user",
            not wrong_created,
            f"users without exactly one user.created event: {_sample(wrong_created)}",
        ),
        Check(
            "handled_once_per_handler",
            not not_handled and not not_once,
            f"(event, handler) never handled: {_sample(not_handled)}; "
            f"handled other than once: {_sample(not_once)}",
        ),
        Check(
            "welcome_email_once",
            not wrong_emails,
            f"addresses without exactly one welcome email (a second copy only after a send "
            f"interrupted by {' or '.join(sorted(INTERRUPTING_FAULTS))}): "
            f"{_sample(wrong_emails)}; resent: {len(resent)}",
        ),
        Check(
            "webhook_received_once",
            not wrong_webhooks and not undelivered,
            f"events not received once (a second copy only after a delivery interrupted by "
            f"{' or '.join(sorted(INTERRUPTING_FAULTS))}): {_sample(wrong_webhooks)}; "
            f"redelivered: {len(redelivered)}; deliveries not delivered: {undelivered}",
        ),
        Check("webhook_signatures", bad_signatures == 0, f"bad signatures: {bad_signatures}"),
        Check(
            "backlog_drained",
            drain["settled_s"] is not None,
            f"outbox backlog zero after {drain['outbox_zero_s']} s, everything handled after "
            f"{drain['settled_s']} s (bound {drain['bound_s']:.0f} s); left: {drain['left']}",
        ),
    ]
    return summary, checks


def caught_up(*, older_than: float) -> bool:
    """Whether nothing has been owed for longer than `older_than` seconds: no event older
    than that unhandled, no webhook delivery due that long ago undelivered.

    The same notion of "owed" as `owed_at_kill`: a delivery waiting on a retry's backoff
    (`next_attempt_at` in the future) is on schedule, not behind; it is due from its
    `next_attempt_at` (set when it was created, when an attempt failed, when the sweeper
    revived it; cleared when it was delivered or dead-lettered).
    """
    from django.db import connections
    from django.db.models import Q
    from django.utils import timezone

    from events.models import OutboxEvent, WebhookDelivery

    # A connection from before a primary restart is dead; the next query opens a new one.
    connections.close_all()
    cutoff = timezone.now() - timedelta(seconds=older_than)
    owed = OutboxEvent.objects.filter(handled_at__isnull=True, created_at__lt=cutoff)
    due = WebhookDelivery.objects.filter(delivered_at__isnull=True, created_at__lt=cutoff).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=cutoff)
    )
    return not owed.exists() and not due.exists()


HANDLER_RUNS = "handler_runs"
DELIVERY = "delivery"


@dataclass(frozen=True)
class Owed:
    """One piece of work the worker's crash owed (Unix times): an event's handler runs, or
    one webhook delivery; when it was scheduled if that was after the kill (a retry
    waiting on its backoff), when it was done (None: never)."""

    kind: str
    done: float | None
    scheduled: float | None = None


def owed_at_kill(*, killed_at: float) -> list[Owed]:
    """What was owed at the worker's SIGKILL (Unix time `killed_at`), from the database.

    The handler runs of every event created before the kill and not handled by then
    (`handled_at`: all of its handlers), and every webhook delivery of those events not
    delivered by then, including the ones the handlers create after it. A delivery's
    schedule at the kill is read from its attempts: `next_attempt_at` has moved on since,
    but the last attempt before the kill says when it was to be tried next (its
    `retry_in_ms` after it, the backoff `next_attempt_at` was set to; none: due).
    """
    from django.db.models import OuterRef, Subquery

    from events.models import OutboxEvent, WebhookAttempt, WebhookDelivery

    killed = datetime.fromtimestamp(killed_at, tz=UTC)
    events = OutboxEvent.objects.filter(created_at__lt=killed).exclude(handled_at__lt=killed)
    owed = [
        Owed(HANDLER_RUNS, done=_timestamp(handled_at))
        for handled_at in events.values_list("handled_at", flat=True)
    ]
    last_attempt = WebhookAttempt.objects.filter(
        delivery=OuterRef("pk"), attempted_at__lt=killed
    ).order_by("-attempted_at", "-id")
    deliveries = (
        WebhookDelivery.objects.filter(event__created_at__lt=killed)
        .exclude(delivered_at__lt=killed)
        .annotate(
            last_attempt_at=Subquery(last_attempt.values("attempted_at")[:1]),
            retry_in_ms=Subquery(last_attempt.values("retry_in_ms")[:1]),
        )
    )
    for delivered_at, attempted_at, retry_in_ms in deliveries.values_list(
        "delivered_at", "last_attempt_at", "retry_in_ms"
    ):
        scheduled = None
        if attempted_at is not None and retry_in_ms is not None:
            scheduled = attempted_at.timestamp() + retry_in_ms / 1000
        owed.append(Owed(DELIVERY, done=_timestamp(delivered_at), scheduled=scheduled))
    return owed


def crash_work_settled(*, killed_at: float) -> bool:
    """Whether everything the worker's crash owed is done, but for deliveries whose
    backoff, scheduled before the kill, has not ended yet."""
    now = time.time()
    return all(
        item.done is not None or (item.scheduled is not None and item.scheduled > now)
        for item in owed_at_kill(killed_at=killed_at)
    )


def _timestamp(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def crash_recovery(
    *, owed: list[Owed], killed_at: float, bound: float | None
) -> tuple[dict[str, Any], Check]:
    """The worker crash's recovery: how late the work it owed was done, against `bound`.

    Each piece is due at the kill, or, for a delivery waiting on a backoff that ends after
    the kill, at the end of that backoff: the crash owes it its own schedule, not sooner.
    The figure (`recovery_s`) is the latest any piece was done after it was due (the
    supervisor's restart of the worker included); None if one never was, which fails
    whatever the bound. With no `bound` (Redis: its visibility timeout cannot meet one)
    the figure is reported only.
    """
    due = [killed_at if item.scheduled is None else max(killed_at, item.scheduled) for item in owed]
    late = [item.done - at for item, at in zip(owed, due, strict=True) if item.done is not None]
    finished = [item.done for item in owed if item.done is not None]
    never = len(owed) - len(finished)
    recovery = None if never else round(max([0.0, *late]), 1)
    last_done = None if never else round(max([killed_at, *finished]) - killed_at, 1)
    waiting = [at - killed_at for at in due if at > killed_at]
    counts = {
        "handler_runs": sum(item.kind == HANDLER_RUNS for item in owed),
        "deliveries_due": sum(item.kind == DELIVERY for item in owed) - len(waiting),
        "deliveries_on_backoff": len(waiting),
    }
    summary = {
        "recovery_s": recovery,
        "owed": counts,
        "last_done_after_kill_s": last_done,
        "never_done": never,
    }
    passed = recovery is not None and (bound is None or recovery <= bound)
    owed_text = (
        f"owed at the kill: {counts['handler_runs']} events' handler runs, "
        f"{counts['deliveries_due']} webhook deliveries due, "
        f"{counts['deliveries_on_backoff']} waiting on a retry's backoff"
        + (f" (until {min(waiting):.1f} to {max(waiting):.1f} s after it)" if waiting else "")
    )
    limit = f"bound {bound:.0f} s" if bound is not None else "reported, not bounded"
    if recovery is None:
        detail = f"{owed_text}; {never} of {len(owed)} never done ({limit})"
    else:
        detail = (
            f"{owed_text}; each done at most {recovery} s after it was due, the last "
            f"{last_done} s after the kill ({limit})"
        )
    return summary, Check("worker_crash_recovery", passed, detail)


def worker_crash_recovery(
    *, windows: list[Window], wall_epoch: float, bound: float | None
) -> tuple[dict[str, Any], Check]:
    """The worker crash's recovery (`crash_recovery`) of the run's `worker_killed` fault,
    whose window starts at run seconds since `wall_epoch` (Unix time)."""
    [window] = [window for window in windows if window.name == WORKER_FAULT]
    killed_at = wall_epoch + window.injected
    return crash_recovery(owed=owed_at_kill(killed_at=killed_at), killed_at=killed_at, bound=bound)
