"""Which handlers react to which topic: each app declares its own with `@handles`.

Events are handled in batches (events.services.event_handle_batch): each handler receives
a list of events and runs inside the transaction that records them as handled by it, so
its database writes and that record commit together. Handlers run one after another,
each in its own transaction, so a failing one never blocks or rolls back another, and a
retry re-runs only those that failed.

Apps import their handler modules in `AppConfig.ready()`, so every process (web, worker,
beat, management commands) knows all of them once Django is set up. A topic exists when
some handler names it: publishing to any other is refused.
"""

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured

from events.models import OutboxEvent

Handler = Callable[[Sequence[OutboxEvent]], None]


class DependencyDown(Exception):
    """Raised by a handler whose work must wait for a dependency (Redis, say) to return.

    Its task retries without a limit, at the backoff's ceiling once reached, instead of
    giving up after EVENTS_HANDLER_MAX_RETRIES: the work is owed, only late.
    """


# The handler label of a failure that concerns every handler of an event: one that came
# before any handler ran, or an event whose topic has none.
ALL_HANDLERS = "all"

# Given as the topic of a handler that reacts to every topic the other handlers declare
# (the webhooks' fan-out): it declares none itself.
EVERY_TOPIC = "*"


@dataclass(frozen=True)
class Registration:
    """One handler: its stable name, its topics and how its events are batched."""

    name: str
    handler: Handler
    topics: tuple[str, ...]
    # Handlers with effects outside the database (an email sent) are given one event per
    # transaction: if a batch failed half-way, running its events again one by one would
    # repeat the effects that had already happened.
    one_event_at_a_time: bool


_REGISTRATIONS: dict[str, Registration] = {}


def handles(
    *topics: str, name: str, one_event_at_a_time: bool = False
) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler `name` of `topics`.

    `name` is what HandledEvent records and metrics label the handler with. It is given,
    not taken from the function, so that renaming or moving the function keeps it: a new
    name would run the handler again for every redelivered event.
    """
    if not topics:
        raise ImproperlyConfigured(f"handler {name} names no topic")

    def register(handler: Handler) -> Handler:
        registered = _REGISTRATIONS.get(name)
        if registered is not None and registered.handler is not handler:
            raise ImproperlyConfigured(f"two handlers are registered as {name}")
        _REGISTRATIONS[name] = Registration(
            name=name, handler=handler, topics=topics, one_event_at_a_time=one_event_at_a_time
        )
        _by_topic.cache_clear()
        return handler

    return register


def topics() -> tuple[str, ...]:
    """Every topic some handler declares, sorted."""
    return tuple(_by_topic())


def handler_names(topic: str) -> tuple[str, ...]:
    """The names of `topic`'s handlers, in the order they registered; KeyError for a topic
    nobody declared."""
    return _by_topic()[topic]


def registration(name: str) -> Registration:
    """The registered handler `name`; LookupError if none is."""
    try:
        return _REGISTRATIONS[name]
    except KeyError:
        raise LookupError(f"{name} is not a registered handler") from None


# Read on every publish and for every handled event, so worked out once per registration.
@functools.cache
def _by_topic() -> dict[str, tuple[str, ...]]:
    # Before the apps are ready their handler modules may not have been imported yet: a
    # topic list read then would be silently short.
    if not apps.ready:
        raise ImproperlyConfigured("the event topics are known once the apps are ready")
    declared = sorted(
        {
            topic
            for entry in _REGISTRATIONS.values()
            for topic in entry.topics
            if topic != EVERY_TOPIC
        }
    )
    return {
        topic: tuple(
            entry.name
            for entry in _REGISTRATIONS.values()
            if topic in entry.topics or EVERY_TOPIC in entry.topics
        )
        for topic in declared
    }
