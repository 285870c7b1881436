"""PostgreSQL and Redis: Multi-AZ, replicas, encryption, backups, never public."""

import json
import re
from typing import Any

from aws_cdk.assertions import Match

from tests.synthesized import Synthesized


def _instances(stage: Synthesized) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    instances = [r["Properties"] for r in stage.resources("AWS::RDS::DBInstance").values()]
    primaries = [p for p in instances if "SourceDBInstanceIdentifier" not in p]
    assert len(primaries) == 1
    return primaries[0], [p for p in instances if "SourceDBInstanceIdentifier" in p]


def test_postgres_15_multi_az_encrypted_backed_up(stage: Synthesized) -> None:
    primary, _ = _instances(stage)
    assert primary["Engine"] == "postgres"
    assert primary["EngineVersion"].startswith("15")
    assert primary["MultiAZ"] is True
    assert primary["StorageEncrypted"] is True
    assert primary["BackupRetentionPeriod"] >= 7
    assert primary["PubliclyAccessible"] is False


def test_at_least_one_read_replica_of_the_primary(stage: Synthesized) -> None:
    _, replicas = _instances(stage)
    assert replicas
    for replica in replicas:
        assert replica["PubliclyAccessible"] is False
        assert "Ref" in str(replica["SourceDBInstanceIdentifier"])


def test_deletion_protection_in_production(production: Synthesized) -> None:
    primary, replicas = _instances(production)
    assert primary["DeletionProtection"] is True
    assert all(replica["DeletionProtection"] is True for replica in replicas)


def test_database_credentials_are_generated_and_rotated(stage: Synthesized) -> None:
    stage.template.has_resource_properties(
        "AWS::SecretsManager::RotationSchedule",
        {"RotationRules": {"ScheduleExpression": "rate(30 days)"}},
    )
    primary, _ = _instances(stage)
    assert "{{resolve:secretsmanager:" in str(primary["MasterUserPassword"])
    (rotation,) = stage.resources("AWS::Serverless::Application").values()
    subnets = rotation["Properties"]["Parameters"]["vpcSubnetIds"]
    # The rotation function reaches Secrets Manager only from subnets with egress.
    assert "tasks" in json.dumps(subnets).lower()
    assert "data" not in json.dumps(subnets).lower()


def test_tls_is_required_by_the_server(stage: Synthesized) -> None:
    stage.template.has_resource_properties(
        "AWS::RDS::DBParameterGroup", {"Parameters": {"rds.force_ssl": "1"}}
    )


def test_the_cache_is_redis_with_auth_tls_and_failover(stage: Synthesized) -> None:
    groups = [
        r["Properties"] for r in stage.resources("AWS::ElastiCache::ReplicationGroup").values()
    ]
    assert len(groups) == 1  # the cache; the broker is RabbitMQ
    for group in groups:
        assert group["TransitEncryptionEnabled"] is True
        assert group["AtRestEncryptionEnabled"] is True
        assert group["MultiAZEnabled"] is True
        assert group["AutomaticFailoverEnabled"] is True
        assert "{{resolve:secretsmanager:" in str(group["AuthToken"])


def test_the_cache_may_evict(stage: Synthesized) -> None:
    policies = [
        r["Properties"]["Properties"]["maxmemory-policy"]
        for r in stage.resources("AWS::ElastiCache::ParameterGroup").values()
    ]
    assert policies == ["allkeys-lru"]


def test_the_broker_is_amazon_mq_for_rabbitmq(stage: Synthesized) -> None:
    [broker] = [r["Properties"] for r in stage.resources("AWS::AmazonMQ::Broker").values()]
    assert broker["EngineType"] == "RABBITMQ"
    assert broker["PubliclyAccessible"] is False
    assert "{{resolve:secretsmanager:" in str(broker["Users"][0]["Password"])
    expected = "CLUSTER_MULTI_AZ" if stage.stack.stage.broker_cluster else "SINGLE_INSTANCE"
    assert broker["DeploymentMode"] == expected


def test_urls_are_tls_only(stage: Synthesized) -> None:
    web = stage.containers()["web"]
    templates = {e["Name"]: str(e["Value"]) for e in web["Environment"]}
    assert templates["REDIS_URL_TEMPLATE"].find("rediss://:{password}@") != -1
    assert "amqps://{username}:{password}@" in templates["CELERY_BROKER_URL_TEMPLATE"]


def test_only_the_load_balancer_admits_addresses(stage: Synthesized) -> None:
    # Every other rule (database, Redis, tasks) admits a security group, never a range.
    for rule in stage.resources("AWS::EC2::SecurityGroupIngress").values():
        assert "SourceSecurityGroupId" in rule["Properties"]
        assert "CidrIp" not in rule["Properties"]
    inline = [
        logical_id
        for logical_id, group in stage.resources("AWS::EC2::SecurityGroup").items()
        if group["Properties"].get("SecurityGroupIngress")
    ]
    assert [re.sub("[0-9A-F]{8}$", "", name) for name in inline] == ["LoadBalancerSecurityGroup"]


def test_data_lives_in_isolated_subnets(stage: Synthesized) -> None:
    stage.template.has_resource_properties(
        "AWS::RDS::DBSubnetGroup", {"SubnetIds": Match.any_value()}
    )
    isolated = {
        logical_id
        for logical_id, subnet in stage.resources("AWS::EC2::Subnet").items()
        if "data" in logical_id.lower()
    }
    for group in stage.resources("AWS::ElastiCache::SubnetGroup").values():
        assert {ref["Ref"] for ref in group["Properties"]["SubnetIds"]} <= isolated
