"""The PostgreSQL backend fails fast while a server is unreachable (core/db/backends/postgresql)."""

import copy
import socket
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


def test_after_one_timeout_the_pool_is_not_asked_while_the_server_is_down(unreachable) -> None:
    with pytest.raises(OperationalError):
        unreachable.ensure_connection()
    assert _requests(unreachable) == 1

    next_probe = base._unreachable_until["unreachable"]
    with pytest.raises(OperationalError, match="is unreachable"):
        unreachable.ensure_connection()
    # Asking often does not postpone the next probe (it did: the primary, back, went unused).
    assert base._unreachable_until["unreachable"] == next_probe
    base._unreachable_until["unreachable"] = 0.0  # the probe interval has passed
    with pytest.raises(OperationalError, match="is unreachable"):
        unreachable.ensure_connection()  # the probe finds it still down
    assert _requests(unreachable) == 1  # so nobody waited for the pool


def test_a_server_back_is_used_at_once_through_a_fresh_pool(services) -> None:
    primary = cast(Any, connections["default"])
    primary.close()
    pool = primary.pool
    base._unreachable_until["default"] = 0.0  # found unreachable, probe interval passed

    with primary.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    assert primary.pool is not pool  # not the one that may be in reconnection backoff
    assert "default" not in base._unreachable_until
