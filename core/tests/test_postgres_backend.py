"""The PostgreSQL backend fails fast while a server is unreachable (core/db/backends/postgresql)."""

import copy
import socket
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest
from django.db import OperationalError, connections

from core.db.backends.postgresql import base

pytestmark = pytest.mark.django_db(transaction=True)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Clock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def let_a_probe_interval_pass(self) -> None:
        self.now += base.PROBE_INTERVAL_SECONDS


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """The backend's outage clock, held still."""
    fake = Clock()
    monkeypatch.setattr(base.OUTAGES, "clock", fake)
    return fake


@pytest.fixture
def unreachable(services) -> Iterator[base.DatabaseWrapper]:
    """A connection to a port nothing listens on, with a short pool timeout."""
    settings_dict: dict[str, Any] = copy.deepcopy(connections["default"].settings_dict)
    settings_dict.update(HOST="127.0.0.1", PORT=str(_closed_port()))
    settings_dict["OPTIONS"]["pool"].update(min_size=0, timeout=0.3)
    wrapper = base.DatabaseWrapper(settings_dict, alias="unreachable")
    yield wrapper
    wrapper.close_pool()
    base.OUTAGES.mark_up("unreachable")


def _requests(wrapper: base.DatabaseWrapper) -> int:
    return int(wrapper.pool.get_stats().get("requests_num", 0))


def test_after_one_timeout_the_pool_is_not_asked_while_the_server_is_down(
    unreachable, clock: Clock
) -> None:
    with pytest.raises(OperationalError):
        unreachable.ensure_connection()
    assert _requests(unreachable) == 1

    next_probe = base.OUTAGES.next_probe("unreachable")
    assert next_probe is not None
    with pytest.raises(OperationalError, match="is unreachable"):
        unreachable.ensure_connection()
    # Asking often does not postpone the next probe (it did: the primary, back, went unused).
    assert base.OUTAGES.next_probe("unreachable") == next_probe
    clock.let_a_probe_interval_pass()
    with pytest.raises(OperationalError, match="is unreachable"):
        unreachable.ensure_connection()  # the probe finds it still down
    assert _requests(unreachable) == 1  # so nobody waited for the pool


def test_a_server_back_is_used_at_once_through_a_fresh_pool(services, clock: Clock) -> None:
    primary = cast(Any, connections["default"])
    primary.close()
    pool = primary.pool
    base.OUTAGES.mark_down("default")
    clock.let_a_probe_interval_pass()

    with primary.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    assert primary.pool is not pool  # not the one that may be in reconnection backoff
    assert base.OUTAGES.next_probe("default") is None
