"""deploy/check_settings_coverage.py: documented settings against rendered manifests."""

import pytest

from deploy import check_settings_coverage as coverage

MANIFESTS = """
apiVersion: v1
kind: ConfigMap
metadata: {name: config}
data: {LOG_LEVEL: INFO}
---
apiVersion: v1
kind: Secret
metadata: {name: secrets}
stringData: {DJANGO_SECRET_KEY: x}
---
apiVersion: v1
kind: Service
metadata: {name: web, labels: {NOT_A_SETTING: x}}
"""


def test_documented_variables_are_the_app_and_server_tables_only() -> None:
    documented = coverage.documented_variables()

    assert {"DATABASE_URL", "HEALTH_CHECK_TIMEOUT", "WEB_CONCURRENCY"} <= documented
    assert not {name for name in documented if name.startswith("SERVICES_")}


def test_configured_variables_are_configmap_and_secret_keys() -> None:
    assert coverage.configured_variables(MANIFESTS) == {"LOG_LEVEL", "DJANGO_SECRET_KEY"}


def test_main_names_what_is_missing(monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.stdin.read", lambda: MANIFESTS)
    monkeypatch.setattr(coverage, "documented_variables", lambda: {"LOG_LEVEL", "REDIS_URL"})

    assert coverage.main() == 1
    assert "  REDIS_URL" in capsys.readouterr().out


@pytest.mark.parametrize("documented", [{"LOG_LEVEL"}, {"LOG_LEVEL", "DJANGO_SECRET_KEY"}])
def test_main_passes_when_everything_is_configured(monkeypatch, documented) -> None:
    monkeypatch.setattr("sys.stdin.read", lambda: MANIFESTS)
    monkeypatch.setattr(coverage, "documented_variables", lambda: documented)

    assert coverage.main() == 0
