"""A synthesized stage, as the tests see it."""

from dataclasses import dataclass
from typing import Any

from aws_cdk import cx_api
from aws_cdk.assertions import Template

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
