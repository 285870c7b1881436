"""compose.yaml: Redis refuses clients without a password, and the stack refuses to start
without one (`make deploy-check` also runs `docker-compose config` with and without it)."""

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = "${REDIS_PASSWORD:?"


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "compose.yaml").read_text()))


def test_redis_requires_the_password_it_cannot_start_without() -> None:
    redis = compose()["services"]["redis"]
    assert redis["environment"]["REDIS_PASSWORD"].startswith(REQUIRED)
    assert '--requirepass "$$REDIS_PASSWORD"' in " ".join(redis["command"])
    assert "REDISCLI_AUTH" in " ".join(redis["healthcheck"]["test"])


def test_every_redis_url_carries_the_password() -> None:
    services = compose()["services"]
    urls = [
        value
        for service in services.values()
        for value in (service.get("environment") or {}).values()
        if isinstance(value, str) and value.startswith(("redis://", "rediss://"))
    ]
    assert {url.split("@")[-1] for url in urls} == {"redis:6379/0"}
    for url in urls:
        assert f"default:{REQUIRED}" in url


def test_the_broker_is_rabbitmq_with_its_password() -> None:
    services = compose()["services"]
    broker_urls = {
        str(service["environment"]["CELERY_BROKER_URL"])
        for service in services.values()
        if "CELERY_BROKER_URL" in (service.get("environment") or {})
    }
    [url] = broker_urls
    assert url.startswith("amqp://userservice:")
    assert url.endswith("@rabbitmq:5672/userservice")
    assert "RABBITMQ_PASSWORD" in services["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS"]
