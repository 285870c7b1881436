"""The CDK app: one UserServiceStack per stage of cdk.json, checked by cdk-nag.

`python app.py` synthesizes every stage into cdk.out and exits 1 if cdk-nag reports an
unsuppressed finding; `cdk deploy UserService-<stage> -c imageTag=...` deploys one.
"""

import json
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from userservice_infra.config import stage_configs
from userservice_infra.nag import check
from userservice_infra.stack import UserServiceStack

HERE = Path(__file__).resolve().parent


def build_app(*, outdir: str | None = None) -> cdk.App:
    """The app with every stage; cdk.json's context is the default, `-c` overrides it."""
    defaults: dict[str, Any] = json.loads((HERE / "cdk.json").read_text())["context"]
    app = cdk.App(context=defaults, outdir=outdir)
    context = dict(app.node.get_context("userservice"))
    context["imageTag"] = app.node.get_context("imageTag")
    stages = stage_configs(context)
    for stage in stages:
        # What a lookup would record: the zones are named in cdk.json, so nothing asks AWS.
        lookup_key = f"availability-zones:account={stage.account}:region={stage.region}"
        app.node.set_context(lookup_key, stage.availability_zones)
    for stage in stages:
        UserServiceStack(app, f"UserService-{stage.name}", stage=stage)
    check(app)
    return app


def nag_findings(assembly: cdk.cx_api.CloudAssembly) -> list[str]:
    """Every unsuppressed cdk-nag error or warning in the synthesized assembly."""
    return [
        f"{stack.stack_name} {message.id}: {message.entry.data}"
        for stack in assembly.stacks
        for message in stack.messages
        if message.level
        in (cdk.cx_api.SynthesisMessageLevel.ERROR, cdk.cx_api.SynthesisMessageLevel.WARNING)
        and "AwsSolutions-" in str(message.entry.data)
    ]


def main() -> int:
    """Synthesize every stage; 1 if cdk-nag found anything unsuppressed."""
    assembly = build_app(outdir=str(HERE / "cdk.out")).synth()
    findings = nag_findings(assembly)
    print("\n".join(findings) or f"cdk-nag: no findings in {len(assembly.stacks)} stacks")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
