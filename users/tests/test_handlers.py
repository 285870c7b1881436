"""users.handlers: the users domain's reactions to its own events."""

from datetime import timedelta

import pytest
from django.core import mail
from django.db.models import F
from django.utils import timezone

from events.models import OutboxEvent
from events.registry import DependencyDown
from events.tests.factories import OutboxEventFactory
from users import handlers
from users.cache import user_cache, user_cache_prime, user_entry_get
from users.models import User
from users.services import user_event_payload
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def event_for(user: User, topic: str = "user.updated") -> OutboxEvent:
    return OutboxEventFactory.build(
        topic=topic, aggregate_id=str(user.pk), payload=user_event_payload(user)
    )


def cached_name(user: User) -> str:
    entry = user_entry_get(user.pk)
    assert entry is not None
    return str(entry["user"]["display_name"])


def test_welcome_email_goes_to_the_new_address() -> None:
    user = UserFactory.create(email="ann@example.com", display_name="Ann")
    handlers.send_welcome_email([event_for(user, "user.created")])
    (message,) = mail.outbox
    assert message.to == ["ann@example.com"]
    assert "ann@example.com" in message.body


def test_welcome_email_carries_no_text_the_sign_up_chose() -> None:
    bait = "Your account is locked. Call +1 555 0100 at once"
    user = UserFactory.create(email="ann@example.com", display_name=bait)
    handlers.send_welcome_email([event_for(user, "user.created")])
    (message,) = mail.outbox
    assert bait not in message.body
    assert bait not in message.subject


# Committed for real: nothing is cached inside a transaction.
@pytest.mark.django_db(transaction=True)
def test_cache_invalidation_from_the_event_drops_what_the_writer_could_not(services) -> None:
    user = UserFactory.create(display_name="Old")
    user_cache_prime(user)
    # A write whose process died before it could tell Redis (Redis was down then).
    User.objects.filter(pk=user.pk).update(
        display_name="New",
        updated_at=timezone.now() + timedelta(seconds=1),
        version=F("version") + 1,
    )
    user.refresh_from_db()
    user_cache.clear_local()
    assert cached_name(user) == "Old", "stale, as described"

    handlers.invalidate_cached_user([event_for(user)])

    user_cache.clear_local()
    assert cached_name(user) == "New"


def test_cache_invalidation_raises_while_redis_is_down_so_the_task_retries(
    redis_down: None,
) -> None:
    user = UserFactory.create()
    with pytest.raises(DependencyDown):
        handlers.invalidate_cached_user([event_for(user)])
