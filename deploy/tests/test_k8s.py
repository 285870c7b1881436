"""deploy/k8s/base: Redis's credentials live in the Secret, never in the ConfigMap (the
service refuses a Redis URL without a password; see config/settings.py)."""

from pathlib import Path
from typing import Any

import yaml

BASE = Path(__file__).resolve().parents[1] / "k8s" / "base"


def manifest(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((BASE / name).read_text()))


def test_redis_urls_come_from_the_secret_only() -> None:
    secret = manifest("secret.yaml")["stringData"]
    config = manifest("configmap.yaml")["data"]
    for name in ("REDIS_URL", "CELERY_BROKER_URL"):
        assert name in secret
        assert name not in config
    assert not any(
        "redis://" in str(value) or "rediss://" in str(value) for value in config.values()
    )
