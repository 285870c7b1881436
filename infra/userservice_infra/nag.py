"""cdk-nag's AwsSolutions rules on every stack, each accepted finding with its reason.

Every acceptance names the construct it applies to (never the whole stack), so a new
resource with the same finding still fails `make infra-check` until someone decides.
"""

from typing import TYPE_CHECKING

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, NagPackSuppression, NagSuppressions
from constructs import IConstruct

if TYPE_CHECKING:
    from userservice_infra.stack import UserServiceStack

PORT_REASON = (
    "A non-default port is obscurity, not a control: only the tasks' security groups "
    "reach the port, inside isolated subnets."
)


def check(app: cdk.App) -> None:
    """Run the AwsSolutions pack over the app at synthesis."""
    cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))


def _accept(
    construct: IConstruct, rule: str, reason: str, *, applies_to: list[str] | None = None
) -> None:
    suppression = NagPackSuppression(id=rule, reason=reason, applies_to=applies_to)
    NagSuppressions.add_resource_suppressions(construct, [suppression], apply_to_children=True)


def accept_findings(stack: "UserServiceStack") -> None:
    """The findings this design accepts, each on its own construct with its reason."""
    _accept(stack.cache.replication_group, "AwsSolutions-AEC5", PORT_REASON)
    _accept(
        stack.cache.secret,
        "AwsSolutions-SMG4",
        "ElastiCache AUTH rotation is a two-step ROTATE/SET change of the replication "
        "group, done as a maintenance procedure (docs/deploy.md), not by a rotation Lambda.",
    )
    _accept(
        stack.broker.secret,
        "AwsSolutions-SMG4",
        "Amazon MQ's user password is changed by updating the broker's user, a maintenance "
        "procedure (docs/deploy.md), not by a rotation Lambda.",
    )
    for database in (stack.database, *stack.replicas):
        _accept(database, "AwsSolutions-RDS11", PORT_REASON)
    for replica in stack.replicas:
        _accept(
            replica,
            "AwsSolutions-RDS2",
            "A replica is encrypted because its source is (RDS refuses StorageEncrypted on a "
            "replica); the primary's encryption is tested.",
        )
        _accept(
            replica,
            "AwsSolutions-RDS3",
            "Read replicas are not Multi-AZ: the app sends a replica's reads to the Multi-AZ "
            "primary while the replica is down (docs/replicas.md).",
        )
    if not stack.stage.deletion_protection:
        for database in (stack.database, *stack.replicas):
            _accept(
                database,
                "AwsSolutions-RDS10",
                "Staging only: a staging database is disposable; production has deletion "
                "protection (stage context deletionProtection).",
            )
    _accept(
        stack.django_secret_key,
        "AwsSolutions-SMG4",
        "Rotating DJANGO_SECRET_KEY signs everyone out; it is rotated by a release, not a "
        "schedule.",
    )
    _accept(
        stack.metrics_token,
        "AwsSolutions-SMG4",
        "The scraper and the tasks read the token at start; it is rotated with a release.",
    )
    _accept(
        stack.load_balancer_group,
        "AwsSolutions-EC23",
        "The public API: HTTPS (and HTTP, redirected) from anywhere is the point.",
    )
    _accept(
        stack.load_balancer_logs,
        "AwsSolutions-S1",
        "This bucket holds the load balancer's access logs; logging it would log the logs.",
    )
    for task in stack.task_definitions.values():
        _accept(
            task,
            "AwsSolutions-ECS2",
            "Only non-secret settings are plain environment variables; every secret is a "
            "Secrets Manager or SSM reference (tests/test_secrets.py).",
        )
        _accept(
            task.obtain_execution_role(),
            "AwsSolutions-IAM5",
            "ecr:GetAuthorizationToken has no resource-level permissions.",
            applies_to=["Resource::*"],
        )
    managed_lambda_role = "AWSLambdaBasicExecutionRole only lets the function write its own logs."
    _accept(
        stack.smoke_hook,
        "AwsSolutions-IAM4",
        managed_lambda_role,
        applies_to=[
            "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
        ],
    )
    _accept(
        stack.deployment_group,
        "AwsSolutions-IAM4",
        "AWSCodeDeployRoleForECS is the role CodeDeploy's ECS blue-green needs, as AWS keeps it.",
        applies_to=["Policy::arn:<AWS::Partition>:iam::aws:policy/AWSCodeDeployRoleForECS"],
    )
    _accept(
        stack.smoke_project,
        "AwsSolutions-IAM5",
        "CodeBuild's generated grants: network interfaces in the VPC (no resource-level "
        "ARNs before creation), its own log group and report groups, reading the smoke "
        "script asset, and its KMS key.",
        applies_to=[
            "Resource::*",
            "Action::s3:GetObject*",
            "Action::s3:GetBucket*",
            "Action::s3:List*",
            "Action::kms:ReEncrypt*",
            "Action::kms:GenerateDataKey*",
            {"regex": "/^Resource::arn:<AWS::Partition>:ec2:.*:network-interface/\\*$/g"},  # type: ignore[list-item]
            {"regex": "/^Resource::arn:<AWS::Partition>:logs:.*:log-group:/aws/codebuild/.*$/g"},  # type: ignore[list-item]
            {"regex": "/^Resource::arn:<AWS::Partition>:codebuild:.*:report-group/.*$/g"},  # type: ignore[list-item]
        ],
    )
