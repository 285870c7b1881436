"""scripts/services.sh, the services of `make services-up` and `make test`: the Redis it
starts takes only clients that give its password, and that password is on no command line.
"""

import os
import stat
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis


def test_redis_refuses_clients_without_the_password(services) -> None:
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
