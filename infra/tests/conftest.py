"""One synthesis of every stage for the whole session: jsii synthesis is the slow part."""

import pytest
from aws_cdk.assertions import Template

from app import HERE, build_app
from tests.synthesized import Synthesized
from userservice_infra.stack import UserServiceStack


@pytest.fixture(scope="session")
def stages() -> dict[str, Synthesized]:
    """Every stage of cdk.json, synthesized once into infra/cdk.out (what `cdk deploy` uses)."""
    app = build_app(outdir=str(HERE / "cdk.out"))
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
