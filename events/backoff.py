"""Retry delays for handlers and webhook deliveries."""

import random


def backoff_seconds(*, attempt: int, base: float, maximum: float) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random.

    Celery's retry_jitter draws from [0, delay] (full jitter), so a later retry can come
    sooner than an earlier one, and retry_backoff is fixed when the task is declared;
    here delays never shrink from one attempt to the next (retry n waits between
    base*2^(n-1)/2 and base*2^(n-1)) and the base comes from settings at run time.
    """
    delay = min(maximum, base * 2 ** (attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 (jitter, not security)
