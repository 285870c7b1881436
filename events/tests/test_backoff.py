"""events.backoff: delays grow and stay within their bounds."""

import pytest

from events.backoff import backoff_seconds


@pytest.mark.parametrize("seed", range(20))
def test_each_delay_is_within_its_band_and_never_shrinks(seed: int) -> None:
    import random

    random.seed(seed)
    delays = [backoff_seconds(attempt=n, base=1.0, maximum=100.0) for n in range(1, 7)]
    for n, delay in enumerate(delays):
        assert 2**n / 2 <= delay <= 2**n
    assert delays == sorted(delays)


def test_the_maximum_caps_the_delay() -> None:
    assert 50 <= backoff_seconds(attempt=30, base=1.0, maximum=100.0) <= 100
