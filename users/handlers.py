"""Reactions of the users domain to its events, registered with events.registry.

The names given to `handles` are recorded with every event handled: never change one.
"""

from collections.abc import Sequence

from django.conf import settings
from django.core.mail import send_mail

from core.cache.backend import RedisUnavailable
from events.models import OutboxEvent
from events.registry import DependencyDown, handles
from users.cache import user_cache_invalidate_from_events
from users.topics import USER_CREATED, USER_DEACTIVATED, USER_UPDATED

WELCOME_EMAIL = "users.handlers.send_welcome_email"
CACHE_INVALIDATION = "users.handlers.invalidate_cached_user"


@handles(USER_CREATED, name=WELCOME_EMAIL, one_event_at_a_time=True)
def send_welcome_email(events: Sequence[OutboxEvent]) -> None:
    """user.created: greet each new user at the address they signed up with.

    The text is ours alone: the display name is whatever the sign-up typed, and anyone
    may sign up with someone else's address, so putting it in the message would let them
    write to that inbox in our name ("Your account is locked, call ..."). The address it
    goes to is the one thing the recipient knows.

    Runs in the transaction that records the event as handled; if sending raises, that
    record rolls back and the task retries. It is given one event at a time
    (`one_event_at_a_time`), so a retry never repeats another's email.
    """
    for event in events:
        email = event.payload["email"]
        send_mail(
            subject="Welcome",
            message=(
                f"Hello,\n\nan account for {email} is ready. Welcome aboard.\n\n"
                "If you did not sign up, ignore this message.\n"
            ),
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=[email],
        )


@handles(USER_CREATED, USER_UPDATED, USER_DEACTIVATED, name=CACHE_INVALIDATION)
def invalidate_cached_user(events: Sequence[OutboxEvent]) -> None:
    """user.*: stop Redis serving cached copies older than the users' rows, durably
    (see users.cache).

    Raises DependencyDown while Redis is down: the task retries until it is back.
    """
    try:
        user_cache_invalidate_from_events(user_ids=[event.payload["id"] for event in events])
    except RedisUnavailable as exc:
        raise DependencyDown("Redis is unavailable") from exc
