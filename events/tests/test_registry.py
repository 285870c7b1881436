"""events.registry: handlers declared by their apps, under names that never change."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from events.registry import handler_names, handles, registration, topics
from events.webhooks import FAN_OUT, webhook_fan_out
from users.handlers import (
    CACHE_INVALIDATION,
    WELCOME_EMAIL,
    invalidate_cached_user,
    send_welcome_email,
)
from users.topics import USER_CREATED, USER_DEACTIVATED, USER_UPDATED


def test_the_apps_declare_the_users_topics() -> None:
    assert topics() == (USER_CREATED, USER_DEACTIVATED, USER_UPDATED)


def test_each_topic_has_its_handlers_and_the_webhooks_have_every_topic() -> None:
    assert set(handler_names(USER_CREATED)) == {FAN_OUT, WELCOME_EMAIL, CACHE_INVALIDATION}
    assert set(handler_names(USER_UPDATED)) == {FAN_OUT, CACHE_INVALIDATION}
    assert set(handler_names(USER_DEACTIVATED)) == {FAN_OUT, CACHE_INVALIDATION}


def test_a_topic_nobody_declared_has_no_handlers() -> None:
    with pytest.raises(KeyError):
        handler_names("user.renamed")


def test_the_names_earlier_releases_recorded_still_name_their_handlers() -> None:
    # HandledEvent rows written before handlers registered themselves hold these names; a
    # redelivered event must find them, or its handlers would run twice.
    assert registration("users.handlers.send_welcome_email").handler is send_welcome_email
    assert registration("users.handlers.invalidate_cached_user").handler is invalidate_cached_user
    assert registration("events.webhooks.webhook_fan_out").handler is webhook_fan_out


def test_only_the_email_is_given_one_event_at_a_time() -> None:
    assert registration(WELCOME_EMAIL).one_event_at_a_time
    assert not registration(CACHE_INVALIDATION).one_event_at_a_time
    assert not registration(FAN_OUT).one_event_at_a_time


def test_an_unregistered_name_is_refused() -> None:
    with pytest.raises(LookupError):
        registration("os.system")


def test_a_second_handler_under_a_taken_name_is_refused() -> None:
    def impostor(events: object) -> None:
        """Would take over the welcome email's record of what it handled."""

    with pytest.raises(ImproperlyConfigured):
        handles(USER_CREATED, name=WELCOME_EMAIL)(impostor)
    assert registration(WELCOME_EMAIL).handler is send_welcome_email


def test_registering_the_same_handler_again_changes_nothing() -> None:
    assert (
        handles(USER_CREATED, name=WELCOME_EMAIL, one_event_at_a_time=True)(send_welcome_email)
        is send_welcome_email
    )
    assert registration(WELCOME_EMAIL).handler is send_welcome_email
    assert set(handler_names(USER_CREATED)) == {FAN_OUT, WELCOME_EMAIL, CACHE_INVALIDATION}


def test_a_handler_must_name_a_topic() -> None:
    with pytest.raises(ImproperlyConfigured):
        handles(name="tests.no_topic")
