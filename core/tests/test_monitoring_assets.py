"""The alert rules and the Grafana dashboard query metrics that exist.

`make alerts-check` runs promtool on the rules; this checks the names: every metric a rule
or a panel queries must be exported by this code base.
"""

import json
import re
from pathlib import Path

import django_prometheus.db.metrics  # noqa: F401 (registered by the PostgreSQL backend)
import pytest
import yaml
from django.test import Client
from prometheus_client import REGISTRY

# Imported for what they register: the worker's task metrics, the per-process resources.
import core.observability.celery_metrics
import core.observability.resource_metrics  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/prometheus/userservice-rules.yml"
DASHBOARD = ROOT / "deploy/grafana/userservice.json"

_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
_PROMQL_WORDS |= {"unless", "bool", "offset"}
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "gauge": ("",),
}


def _exported_names() -> set[str]:
    Client(REMOTE_ADDR="127.0.0.1").get("/healthz")  # instantiates django-prometheus' middleware
    names = set()
    for family in REGISTRY.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    tokens = re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr)
    return {token for token in tokens if token not in _PROMQL_WORDS}


def _rule_exprs() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def _dashboard_panels() -> list[dict]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [panel for panel in panels if panel["type"] != "row"]


def test_metric_names_parses_promql() -> None:
    expr = 'histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="y z"}[5m]))) / max(b) > 1'
    assert metric_names(expr) == {"a_bucket", "b"}


@pytest.mark.django_db
def test_alerts_and_panels_query_exported_metrics() -> None:
    known = _exported_names()
    exprs = _rule_exprs() + [t["expr"] for p in _dashboard_panels() for t in p["targets"]]
    queried = set().union(*(metric_names(expr) for expr in exprs))
    assert queried - known == set()


def test_every_alert_operators_rely_on_exists() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = {rule["alert"]: rule for group in groups for rule in group["rules"]}
    for needed in (
        "UserServiceHighLatencyP99",
        "UserServiceHigh5xxRatio",
        "UserServiceOutboxStale",
        "UserServiceReplicaDown",
        "UserServiceReplicaLagging",
        "UserServiceRedisBreakerOpen",
        "UserServiceCeleryTaskFailures",
        "UserServiceDatabasePoolExhausted",
    ):
        assert needed in alerts
        assert alerts[needed]["labels"]["severity"] in {"warning", "critical"}


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(panel["title"] for panel in _dashboard_panels()).lower()
    signals = ["latency", "traffic", "errors", "saturation", "cache hit ratio", "outbox", "cpu"]
    signals += ["memory", "database connections"]
    for signal in signals:
        assert signal in titles
    for panel in _dashboard_panels():
        assert panel["datasource"]["uid"] == "prometheus"
        assert panel["targets"]
        assert all(target["expr"].strip() for target in panel["targets"])
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
