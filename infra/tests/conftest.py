"""One synthesis of every stage for the whole session: jsii synthesis is the slow part."""

from dataclasses import dataclass
from typing import Any

import pytest
from aws_cdk import cx_api
from aws_cdk.assertions import Template

from app import HERE, build_app
from userservice_infra.stack import UserServiceStack


@dataclass(frozen=True)
class Synthesized:
    """A stage's stack, its template and the assembly it came from."""

    stack: UserServiceStack
    template: Template
    assembly: cx_api.CloudAssembly

    @property
    def json(self) -> dict[str, Any]:
        """The CloudFormation template as a dict."""
        return dict(self.template.to_json())

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """Every resource of this CloudFormation type, by logical id."""
        return {
            logical_id: resource
            for logical_id, resource in self.json["Resources"].items()
            if resource["Type"] == resource_type
        }

    def containers(self) -> dict[str, dict[str, Any]]:
        """Every container definition, by its name (web, worker, beat, migrate)."""
        return {
            container["Name"]: container
            for task in self.resources("AWS::ECS::TaskDefinition").values()
            for container in task["Properties"]["ContainerDefinitions"]
        }


@pytest.fixture(scope="session")
def stages() -> dict[str, Synthesized]:
    """Every stage of cdk.json, synthesized once into infra/cdk.out (what `cdk deploy` uses)."""
    app = build_app(outdir=str(HERE.parent / "cdk.out"))
    assembly = app.synth()
    return {
        child.stage.name: Synthesized(
            stack=child, template=Template.from_stack(child), assembly=assembly
        )
        for child in app.node.children
        if isinstance(child, UserServiceStack)
    }


@pytest.fixture(params=["staging", "production"])
def stage(request: pytest.FixtureRequest, stages: dict[str, Synthesized]) -> Synthesized:
    """Each stage in turn."""
    return stages[request.param]


@pytest.fixture
def production(stages: dict[str, Synthesized]) -> Synthesized:
    """The production stage."""
    return stages["production"]
