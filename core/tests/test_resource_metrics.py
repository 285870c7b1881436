"""core.observability.resource_metrics: this process's CPU, memory and PostgreSQL connection
pools."""

import os
from typing import cast

import pytest
from django.db import connections
from prometheus_client import REGISTRY
from psycopg_pool import PoolTimeout

from core.db.backends.postgresql.base import DatabaseWrapper
from core.observability import resource_metrics


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_a_sample_records_cpu_time_and_resident_memory() -> None:
    resource_metrics.sample(process="web")
    cpu = os.times()
    recorded = _value("userservice_process_cpu_seconds", process="web")
    assert recorded is not None
    assert 0 < recorded <= cpu.user + cpu.system
    memory = _value("userservice_process_resident_memory_bytes", process="web")
    assert memory is not None
    assert memory > 10_000_000


def test_sampling_is_off_at_zero_seconds(settings) -> None:
    settings.METRICS_SAMPLE_SECONDS = 0
    assert resource_metrics.start_sampling(process="web") is False


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_pools_report_connections_waiting_and_timeouts(settings) -> None:
    default = cast(DatabaseWrapper, connections["default"])
    default.ensure_connection()
    pool = default.pool
    resource_metrics.sample(process="web")
    assert _value("userservice_db_pool_connections", database="default", state="in_use") == 1
    assert _value("userservice_db_pool_max_connections", database="default") == pool.max_size
    assert _value("userservice_db_pool_requests_waiting", database="default") == 0
    timeouts = _value("userservice_db_pool_timeouts_total", database="default") or 0.0

    # Exhaust the pool: every connection borrowed, and one more borrower gives up.
    held = [pool.getconn() for _ in range(pool.max_size - 1)]
    try:
        with pytest.raises(PoolTimeout):
            pool.getconn(timeout=0.05)
        resource_metrics.sample(process="web")
        in_use = _value("userservice_db_pool_connections", database="default", state="in_use")
        assert in_use == pool.max_size
        assert _value("userservice_db_pool_connections", database="default", state="idle") == 0
        assert _value("userservice_db_pool_timeouts_total", database="default") == timeouts + 1
    finally:
        for connection in held:
            pool.putconn(connection)

    resource_metrics.sample(process="web")
    assert _value("userservice_db_pool_connections", database="default", state="in_use") == 1
    # Counted once, not again on every later sample.
    assert _value("userservice_db_pool_timeouts_total", database="default") == timeouts + 1


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_pool_nobody_opened_is_not_opened_to_be_measured() -> None:
    replicas = [alias for alias in connections if alias.startswith("replica_")]
    assert replicas, "make test configures a replica"
    for alias in replicas:
        cast(DatabaseWrapper, connections[alias]).close_pool()
    resource_metrics.sample(process="web")
    assert not set(replicas) & set(DatabaseWrapper.open_pools())
