"""CodeDeploy lifecycle hook (AfterAllowTestTraffic): start the smoke-test build.

Deployed as the Lambda function's inline code. The CodeBuild project runs `make smoke`'s
script against the test listener, then reports Succeeded or Failed for this hook
execution itself, so the function does not wait (or pay) for the test. If the build cannot
even start, the hook fails here and CodeDeploy rolls back.
"""

import os
from typing import Any

import boto3  # in the Lambda runtime; no venv of this project installs it


def handler(event: dict[str, Any], context: object) -> None:
    """Start the smoke build with this hook execution's ids; fail the hook if it can't."""
    deployment_id = event["DeploymentId"]
    execution_id = event["LifecycleEventHookExecutionId"]
    try:
        boto3.client("codebuild").start_build(
            projectName=os.environ["SMOKE_PROJECT"],
            environmentVariablesOverride=[
                {"name": "DEPLOYMENT_ID", "value": deployment_id, "type": "PLAINTEXT"},
                {"name": "HOOK_EXECUTION_ID", "value": execution_id, "type": "PLAINTEXT"},
            ],
        )
    except Exception:
        boto3.client("codedeploy").put_lifecycle_event_hook_execution_status(
            deploymentId=deployment_id, lifecycleEventHookExecutionId=execution_id, status="Failed"
        )
        raise
