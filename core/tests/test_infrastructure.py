"""The disposable services of `make test` are the real thing: a PostgreSQL primary with a
streaming replica, and Redis. Later tests (router, cache, events) rely on this."""

import time

import psycopg
import pytest
import redis
from django.core.cache import cache
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)


def test_default_database_is_the_postgresql_primary(services) -> None:
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        assert cursor.fetchone() == (False,)


def test_replica_streams_the_primarys_writes(services) -> None:
    replica_url = services["DATABASE_REPLICA_URLS"].split(",")[0]
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS harness_probe (value text)")
        cursor.execute("INSERT INTO harness_probe VALUES ('streamed')")
    test_db = connection.settings_dict["NAME"]
    replica = psycopg.conninfo.make_conninfo(replica_url, dbname=test_db)

    with psycopg.connect(replica, autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        deadline = time.monotonic() + 10
        rows: list = []
        while time.monotonic() < deadline and not rows:
            try:
                rows = conn.execute("SELECT value FROM harness_probe").fetchall()
            except psycopg.errors.UndefinedTable:
                rows = []
            if not rows:
                time.sleep(0.05)
    assert rows == [("streamed",)]


def test_cache_is_redis(services) -> None:
    cache.set("harness-probe", "value", 30)
    client = redis.Redis.from_url(services["REDIS_URL"])
    assert client.ping()
    assert cache.get("harness-probe") == "value"
    assert any(b"harness-probe" in key for key in client.keys("*"))
