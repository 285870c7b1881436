"""The disposable services of `make test` are the real thing: a PostgreSQL primary with a
streaming replica, and Redis. Later tests (router, cache, events) rely on this."""

import os
import stat
import time
from pathlib import Path
from urllib.parse import urlsplit

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


def test_redis_refuses_clients_without_the_password(services) -> None:
    # scripts/services.sh, which `make test` and `make services-up` both run.
    parts = urlsplit(services["REDIS_URL"])
    assert parts.password, "the services' REDIS_URL carries no password"
    for anonymous in (
        redis.Redis(host=parts.hostname or "", port=parts.port or 6379),
        redis.Redis(host=parts.hostname or "", port=parts.port or 6379, password="wrong"),
    ):
        with pytest.raises(redis.AuthenticationError):
            anonymous.set("planted", "value")
    assert redis.Redis.from_url(services["REDIS_URL"]).ping()
    broker = urlsplit(os.environ.get("CELERY_BROKER_URL", ""))
    assert broker.password == parts.password


def test_redis_password_is_kept_in_the_services_directory_only(services) -> None:
    password_file = Path(os.environ["SERVICES_DIR"]) / "redis-password"
    assert password_file.read_text().strip() == urlsplit(services["REDIS_URL"]).password
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    # Not on the server's command line, where `ps` would show it.
    pid = (Path(os.environ["SERVICES_DIR"]) / "run" / "redis.pid").read_text().strip()
    command_line = (Path("/proc") / pid / "cmdline").read_bytes()
    assert password_file.read_text().strip().encode() not in command_line
