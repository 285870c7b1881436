"""Secrets reach the tasks as references; no secret value is in any template."""

import json
import re

import pytest

from tests.synthesized import Synthesized

SECRET_SETTINGS = {
    "DJANGO_SECRET_KEY",
    "METRICS_TOKEN",
    "DATABASE_URL_CREDENTIALS",
    "DATABASE_REPLICA_URLS_CREDENTIALS",
    "REDIS_URL_CREDENTIALS",
    "CELERY_BROKER_URL_CREDENTIALS",
}
WEBHOOK_SETTINGS = {
    "WEBHOOK_ALLOW_PRIVATE_TARGETS",
    "WEBHOOK_TIMEOUT_SECONDS",
    "WEBHOOK_MAX_ATTEMPTS",
    "WEBHOOK_RETRY_BACKOFF_SECONDS",
    "WEBHOOK_BREAKER_FAIL_MAX",
    "WEBHOOK_BREAKER_RESET_SECONDS",
    "WEBHOOK_HTTP_POOLS",
    "WEBHOOK_HTTP_POOL_CONNECTIONS",
    "WEBHOOK_ATTEMPT_RETENTION_DAYS",
    "WEBHOOK_STALLED_AFTER_SECONDS",
}
# Nor may a setting that carries a credential arrive whole in the plain environment.
CREDENTIAL_SETTINGS = {"DATABASE_URL", "DATABASE_REPLICA_URLS", "REDIS_URL", "CELERY_BROKER_URL"}


def test_secrets_and_webhook_settings_are_references(stage: Synthesized) -> None:
    for container in stage.containers().values():
        secrets = {s["Name"]: s["ValueFrom"] for s in container["Secrets"]}
        assert set(secrets) == SECRET_SETTINGS | WEBHOOK_SETTINGS
        for name in SECRET_SETTINGS:
            # A reference to a secret of this stack, resolved by ECS when the task starts.
            assert set(secrets[name]) == {"Ref"}
            secret = stage.json["Resources"][secrets[name]["Ref"]]
            assert secret["Type"] in {
                "AWS::SecretsManager::Secret",
                "AWS::SecretsManager::SecretTargetAttachment",
            }
        for name in WEBHOOK_SETTINGS:
            assert ":ssm:" in json.dumps(secrets[name])
            assert ":parameter" in json.dumps(secrets[name])


@pytest.mark.parametrize("container_name", ["web", "worker", "beat", "migrate"])
def test_no_secret_is_a_plain_environment_variable(stage: Synthesized, container_name: str) -> None:
    environment = stage.containers()[container_name]["Environment"]
    # Templates carry `{password}`, never a password.
    names = {e["Name"] for e in environment}
    assert names & (SECRET_SETTINGS | CREDENTIAL_SETTINGS | WEBHOOK_SETTINGS) == set()
    for entry in environment:
        if entry["Name"].endswith("_TEMPLATE"):
            assert "{password}" in json.dumps(entry["Value"]) or entry["Value"] == ""


def test_secrets_manager_generates_every_value(stage: Synthesized) -> None:
    secrets = stage.resources("AWS::SecretsManager::Secret").values()
    assert len(secrets) == 5  # Django key, metrics token, database, cache, broker
    for secret in secrets:
        assert "SecretString" not in secret["Properties"]
        assert "GenerateSecretString" in secret["Properties"]


def test_no_property_holds_a_literal_credential(stage: Synthesized) -> None:
    sensitive = re.compile(r"(Password|AuthToken|SecretString)$")

    def walk(node: object, key: str = "") -> None:
        if isinstance(node, dict):
            for child_key, value in node.items():
                walk(value, child_key)
        elif isinstance(node, list):
            for value in node:
                walk(value, key)
        elif sensitive.search(key):
            raise AssertionError(f"{key} has a literal value")

    for resource in stage.json["Resources"].values():
        for key, value in resource.get("Properties", {}).items():
            if sensitive.search(key):
                # Only references (dicts: Fn::Join of a {{resolve:...}}), never a string.
                assert isinstance(value, dict) or "{{resolve:secretsmanager:" in value, key
            else:
                walk(value, key)
