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


def test_the_broker_is_rabbitmq_with_a_quorum_majority() -> None:
    documents = list(yaml.safe_load_all((BASE / "rabbitmq.yaml").read_text()))
    [statefulset] = [d for d in documents if d["kind"] == "StatefulSet"]
    [budget] = [d for d in documents if d["kind"] == "PodDisruptionBudget"]
    [config] = [d for d in documents if d["kind"] == "ConfigMap"]
    assert statefulset["spec"]["replicas"] == 3
    assert budget["spec"]["maxUnavailable"] == 1
    assert "consumer_timeout" in config["data"]["rabbitmq.conf"]
    [secret] = [d for d in documents if d["kind"] == "Secret"]
    assert all(value == "" for value in secret["stringData"].values())
    assert "rabbitmq.yaml" in (BASE / "kustomization.yaml").read_text()
