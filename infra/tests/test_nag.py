"""cdk-nag's AwsSolutions pack: nothing unsuppressed, every suppression with a reason."""

import pytest
from aws_cdk.assertions import Annotations, Match

from app import nag_findings
from tests.synthesized import Synthesized


@pytest.mark.parametrize("level", ["error", "warning"])
def test_no_unsuppressed_findings(stage: Synthesized, level: str) -> None:
    annotations = Annotations.from_stack(stage.stack)
    find = annotations.find_error if level == "error" else annotations.find_warning
    findings = find("*", Match.string_like_regexp("AwsSolutions-.*"))
    assert [f"{f.id}: {f.entry.data}" for f in findings] == []


def test_the_app_reports_no_findings(stages: dict[str, Synthesized]) -> None:
    assembly = next(iter(stages.values())).assembly
    assert nag_findings(assembly) == []


def test_every_suppression_carries_a_reason(stage: Synthesized) -> None:
    suppressions = [
        rule
        for resource in stage.json["Resources"].values()
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    ]
    assert suppressions
    for rule in suppressions:
        assert len(rule["reason"]) >= 20, rule
