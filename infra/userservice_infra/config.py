"""Stage sizes and placeholders from the CDK context (`cdk.json`, overridable with -c)."""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class StageConfig:
    """Everything that differs between staging and production; the stack reads nothing else."""

    name: str
    account: str
    region: str
    availability_zones: list[str]
    image_repository: str
    image_tag: str
    domain_name: str
    certificate_arn: str
    nat_gateways: int
    database_instance_type: str
    database_storage_gib: int
    database_replicas: int
    backup_retention_days: int
    deletion_protection: bool
    cache_node_type: str
    broker_node_type: str
    broker_cluster: bool
    web_cpu: int
    web_memory_mib: int
    web_concurrency: int
    worker_cpu: int
    worker_memory_mib: int
    web_min_tasks: int
    web_max_tasks: int
    worker_min_tasks: int
    worker_max_tasks: int
    log_retention_days: int
    blue_termination_wait_minutes: int
    canary_release: bool


_STAGE_KEYS = {
    "domain_name": "domainName",
    "certificate_arn": "certificateArn",
    "nat_gateways": "natGateways",
    "database_instance_type": "databaseInstanceType",
    "database_storage_gib": "databaseStorageGiB",
    "database_replicas": "databaseReplicas",
    "backup_retention_days": "backupRetentionDays",
    "deletion_protection": "deletionProtection",
    "cache_node_type": "cacheNodeType",
    "broker_node_type": "brokerNodeType",
    "broker_cluster": "brokerCluster",
    "web_cpu": "webCpu",
    "web_memory_mib": "webMemoryMiB",
    "web_concurrency": "webConcurrency",
    "worker_cpu": "workerCpu",
    "worker_memory_mib": "workerMemoryMiB",
    "web_min_tasks": "webMinTasks",
    "web_max_tasks": "webMaxTasks",
    "worker_min_tasks": "workerMinTasks",
    "worker_max_tasks": "workerMaxTasks",
    "log_retention_days": "logRetentionDays",
    "blue_termination_wait_minutes": "blueTerminationWaitMinutes",
    "canary_release": "canaryRelease",
}


def stage_configs(context: dict[str, Any]) -> list[StageConfig]:
    """One StageConfig per entry of the context's `stages`, shared values filled in.

    A missing key raises KeyError naming it: a stage must state every size, so staging
    and production cannot silently differ by an omitted value.
    """
    return [
        StageConfig(
            name=name,
            account=context["account"],
            region=context["region"],
            availability_zones=list(context["availabilityZones"]),
            image_repository=context["imageRepository"],
            image_tag=context["imageTag"],
            **{field: stage[key] for field, key in _STAGE_KEYS.items()},
        )
        for name, stage in context["stages"].items()
    ]
