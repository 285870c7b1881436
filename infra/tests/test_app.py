"""The app: every stage synthesizes, offline, from one stack class."""

import json
from pathlib import Path

from tests.synthesized import Synthesized


def test_both_stages_are_instances_of_one_stack(stages: dict[str, Synthesized]) -> None:
    assert set(stages) == {"staging", "production"}
    assert {type(each.stack) for each in stages.values()} == {type(stages["production"].stack)}


def test_stages_differ_by_context_sizes(stages: dict[str, Synthesized]) -> None:
    classes = {
        name: {
            r["Properties"]["DBInstanceClass"]
            for r in each.resources("AWS::RDS::DBInstance").values()
        }
        for name, each in stages.items()
    }
    assert classes == {"staging": {"db.t4g.micro"}, "production": {"db.m7g.large"}}


def test_synthesis_needs_no_lookup(stage: Synthesized) -> None:
    # A missing context value means `cdk synth` would call AWS to fill it.
    manifest = json.loads((Path(stage.assembly.directory) / "manifest.json").read_text())
    assert "missing" not in manifest
    stack = stage.assembly.get_stack_by_name(stage.stack.stack_name)
    assert stack.environment.account == "111111111111"


def test_two_availability_zones_and_no_public_tasks(stage: Synthesized) -> None:
    subnets = stage.resources("AWS::EC2::Subnet").values()
    assert len({s["Properties"]["AvailabilityZone"] for s in subnets}) >= 2
    public = [s for s in subnets if s["Properties"].get("MapPublicIpOnLaunch")]
    assert len(public) == 2  # the load balancer's and the NAT's, one a zone
    for service in stage.resources("AWS::ECS::Service").values():
        network = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
        assert network["AssignPublicIp"] == "DISABLED"
