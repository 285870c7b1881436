"""Every setting of docs/settings.md is provided, and nothing the app does not read."""

import pytest

from tests.synthesized import Synthesized
from userservice_infra import coverage, settings


@pytest.mark.parametrize("container_name", ["web", "worker", "beat", "migrate"])
def test_each_container_provides_exactly_the_documented_settings(
    stage: Synthesized, container_name: str
) -> None:
    container = stage.containers()[container_name]
    problems = coverage.coverage_problems(
        documented=coverage.documented_settings(),
        provided=coverage.provided_settings(container),
    )
    assert problems == []


def test_the_documented_settings_are_the_app_and_server_tables() -> None:
    documented = coverage.documented_settings()
    assert {"DATABASE_URL", "CELERY_BROKER_URL", "WEB_CONCURRENCY"} <= documented
    assert not {name for name in documented if name.startswith("SERVICES_")}


def test_a_composed_setting_needs_both_its_template_and_credentials() -> None:
    template_only = {"Environment": [{"Name": "REDIS_URL_TEMPLATE", "Value": "x"}]}
    both = {
        "Environment": [{"Name": "REDIS_URL_TEMPLATE", "Value": "x"}],
        "Secrets": [{"Name": "REDIS_URL_CREDENTIALS", "ValueFrom": "arn"}],
    }
    assert coverage.provided_settings(template_only) == {"REDIS_URL_TEMPLATE"}
    assert coverage.provided_settings(both) == {"REDIS_URL"}


def test_problems_name_missing_and_extra_settings() -> None:
    problems = coverage.coverage_problems(
        documented={"LOG_LEVEL", "REDIS_URL"}, provided={"LOG_LEVEL", "NOT_A_SETTING"}
    )
    assert problems == ["missing: REDIS_URL", "not read by the app: NOT_A_SETTING"]


def test_plain_values_are_the_kubernetes_configmaps_but_for_the_stage(
    stages: dict[str, Synthesized],
) -> None:
    web = stages["staging"].containers()["web"]
    environment = {e["Name"]: e["Value"] for e in web["Environment"]}
    configmap = settings.configmap_settings()
    differing = {name for name, value in configmap.items() if environment.get(name, value) != value}
    assert differing == {
        "DJANGO_ALLOWED_HOSTS",
        "DJANGO_CSRF_TRUSTED_ORIGINS",
        "DEFAULT_FROM_EMAIL",
        "WEB_CONCURRENCY",
    }
    assert environment["DJANGO_ALLOWED_HOSTS"] == "users.staging.example.com,localhost"
