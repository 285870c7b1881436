"""The PostgreSQL backend fails fast while a server is unreachable (core/backends/postgresql)."""

import copy
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import OperationalError, connections

from core.backends.postgresql import base

pytestmark = pytest.mark.django_db(transaction=True)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def unreachable(services) -> Iterator[base.DatabaseWrapper]:
    """A connection to a port nothing listens on, with a short pool timeout."""
    settings_dict: dict[str, Any] = copy.deepcopy(connections["default"].settings_dict)
    settings_dict.update(HOST="127.0.0.1", PORT=str(_closed_port()))
    settings_dict["OPTIONS"]["pool"].update(min_size=0, timeout=0.3)
    wrapper = base.DatabaseWrapper(settings_dict, alias="unreachable")
    yield wrapper
    wrapper.close_pool()
    base._unreachable_until.pop("unreachable", None)


def _requests(wrapper: base.DatabaseWrapper) -> int:
    return int(wrapper.pool.get_stats().get("requests_num", 0))


def test_after_one_timeout_the_next_connections_fail_without_waiting(unreachable) -> None:
    with pytest.raises(OperationalError):
        unreachable.ensure_connection()
    asked = _requests(unreachable)
    assert asked == 1

    with pytest.raises(OperationalError, match="unreachable moments ago"):
        unreachable.ensure_connection()
    assert _requests(unreachable) == asked  # the pool was not asked, so nobody waited


def test_once_the_moment_has_passed_the_pool_is_asked_again(unreachable) -> None:
    with pytest.raises(OperationalError):
        unreachable.ensure_connection()
    base._unreachable_until["unreachable"] = 0.0  # FAIL_FAST_SECONDS have passed

    with pytest.raises(OperationalError):
        unreachable.ensure_connection()
    assert _requests(unreachable) == 2

