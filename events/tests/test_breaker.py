"""events.breaker: closed, open after FAIL_MAX failures, half-open after RESET."""

from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from events.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    breaker_allows,
    breaker_record,
    breaker_reset,
    breaker_state,
)
from events.models import WebhookSubscription
from events.tests.factories import WebhookSubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def sub() -> WebhookSubscription:
    return WebhookSubscriptionFactory.create()


@override_settings(WEBHOOK_BREAKER_FAIL_MAX=3, WEBHOOK_BREAKER_RESET_SECONDS=60)
def test_opens_after_fail_max_consecutive_failures(sub: WebhookSubscription) -> None:
    breaker_record(subscription=sub, success=False)
    sub.refresh_from_db()
    breaker_record(subscription=sub, success=True)  # resets the count
    for _ in range(2):
        breaker_record(subscription=sub, success=False)
    sub.refresh_from_db()
    assert breaker_allows(subscription=sub)
    breaker_record(subscription=sub, success=False)
    sub.refresh_from_db()
    assert breaker_state(opened_at=sub.breaker_opened_at) == OPEN
    assert not breaker_allows(subscription=sub)


@override_settings(WEBHOOK_BREAKER_FAIL_MAX=3, WEBHOOK_BREAKER_RESET_SECONDS=60)
def test_half_open_after_reset_then_one_result_decides(sub: WebhookSubscription) -> None:
    long_ago = timezone.now() - timedelta(seconds=61)
    WebhookSubscription.objects.filter(pk=sub.pk).update(
        breaker_opened_at=long_ago, consecutive_failures=3
    )
    sub.refresh_from_db()
    assert breaker_state(opened_at=sub.breaker_opened_at) == HALF_OPEN
    assert breaker_allows(subscription=sub)

    breaker_record(subscription=sub, success=False)
    sub.refresh_from_db()
    assert breaker_state(opened_at=sub.breaker_opened_at) == OPEN

    WebhookSubscription.objects.filter(pk=sub.pk).update(breaker_opened_at=long_ago)
    breaker_record(subscription=sub, success=True)
    sub.refresh_from_db()
    assert breaker_state(opened_at=sub.breaker_opened_at) == CLOSED
    assert sub.consecutive_failures == 0


@override_settings(WEBHOOK_BREAKER_FAIL_MAX=3, WEBHOOK_BREAKER_RESET_SECONDS=60)
def test_a_failure_while_open_within_fail_max_keeps_the_opening_time(
    sub: WebhookSubscription,
) -> None:
    opened = timezone.now() - timedelta(seconds=10)
    WebhookSubscription.objects.filter(pk=sub.pk).update(
        breaker_opened_at=opened, consecutive_failures=1
    )
    breaker_record(subscription=sub, success=False)
    sub.refresh_from_db()
    assert (sub.consecutive_failures, sub.breaker_opened_at) == (2, opened)


def test_a_success_on_a_clean_breaker_writes_nothing(
    sub: WebhookSubscription, django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(0):
        breaker_record(subscription=sub, success=True)


def test_reset_closes(sub: WebhookSubscription) -> None:
    sub.breaker_opened_at = timezone.now()
    sub.consecutive_failures = 9
    breaker_reset(subscription=sub)
    sub.refresh_from_db()
    assert sub.breaker_opened_at is None
    assert sub.consecutive_failures == 0
