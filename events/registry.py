"""Which handlers react to which topic: the one place to look it up.

Events are handled in batches (events.services.event_handle_batch): each handler receives
a list of events and runs inside the transaction that records them as handled by it, so
its database writes and that record commit together. Handlers run one after another,
each in its own transaction, so a failing one never blocks or rolls back another, and a
retry re-runs only those that failed.
"""

from collections.abc import Callable, Sequence
from importlib import import_module

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

USER_CREATED = "user.created"
USER_UPDATED = "user.updated"
USER_DEACTIVATED = "user.deactivated"

WELCOME_EMAIL = "users.handlers.send_welcome_email"
WEBHOOKS = "events.webhooks.webhook_fan_out"
CACHE_INVALIDATION = "users.handlers.invalidate_cached_user"

# Topic -> dotted paths of its handlers. The dotted path is also the handler's name in
# HandledEvent and in metrics, so renaming a handler re-runs it for redelivered events.
HANDLERS: dict[str, tuple[str, ...]] = {
    USER_CREATED: (WELCOME_EMAIL, WEBHOOKS, CACHE_INVALIDATION),
    USER_UPDATED: (WEBHOOKS, CACHE_INVALIDATION),
    USER_DEACTIVATED: (WEBHOOKS, CACHE_INVALIDATION),
}

TOPICS = tuple(HANDLERS)

# Handlers with effects outside the database (an email sent) are given one event per
# transaction: if a batch failed half-way, running its events again one by one would
# repeat the effects that had already happened.
ONE_EVENT_AT_A_TIME = frozenset({WELCOME_EMAIL})


def handler_names(topic: str) -> tuple[str, ...]:
    """The handlers of `topic`; KeyError for a topic nobody declared."""
    return HANDLERS[topic]


def resolve(name: str) -> Handler:
    """The handler function for a registered dotted name."""
    if not any(name in names for names in HANDLERS.values()):
        raise LookupError(f"{name} is not a registered handler")
    module, _, attr = name.rpartition(".")
    handler: Handler = getattr(import_module(module), attr)
    return handler
