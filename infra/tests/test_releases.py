"""Blue-green releases: CodeDeploy, the test listener, the smoke hook, rollback alarms."""

import json
import re
from typing import Any

from tests.synthesized import Synthesized


def _name(logical_id: str) -> str:
    """A logical id without the hash CDK appends."""
    return re.sub("[0-9A-F]{8}$", "", logical_id)


def _deployment_group(stage: Synthesized) -> dict[str, Any]:
    (group,) = stage.resources("AWS::CodeDeploy::DeploymentGroup").values()
    return dict(group["Properties"])


def test_blue_green_with_a_test_listener(stage: Synthesized) -> None:
    group = _deployment_group(stage)
    assert group["DeploymentStyle"] == {
        "DeploymentOption": "WITH_TRAFFIC_CONTROL",
        "DeploymentType": "BLUE_GREEN",
    }
    (info,) = group["LoadBalancerInfo"]["TargetGroupPairInfoList"]
    assert len(info["TargetGroups"]) == 2
    assert info["ProdTrafficRoute"]["ListenerArns"]
    assert info["TestTrafficRoute"]["ListenerArns"]
    listeners = {
        r["Properties"]["Port"]
        for r in stage.resources("AWS::ElasticLoadBalancingV2::Listener").values()
    }
    assert listeners == {80, 443, 9443}


def test_rollback_on_failure_and_on_the_5xx_and_latency_alarms(stage: Synthesized) -> None:
    group = _deployment_group(stage)
    assert group["AutoRollbackConfiguration"]["Enabled"] is True
    assert set(group["AutoRollbackConfiguration"]["Events"]) == {
        "DEPLOYMENT_FAILURE",
        "DEPLOYMENT_STOP_ON_ALARM",
        "DEPLOYMENT_STOP_ON_REQUEST",
    }
    assert group["AlarmConfiguration"]["Enabled"] is True
    alarm_ids = {alarm["Name"]["Ref"] for alarm in group["AlarmConfiguration"]["Alarms"]}
    alarms = stage.resources("AWS::CloudWatch::Alarm")
    assert {_name(k) for k in alarm_ids} == {"High5xxRatio", "HighLatencyP99"}
    latency = next(alarms[k]["Properties"] for k in alarm_ids if k.startswith("HighLatency"))
    assert (latency["ExtendedStatistic"], latency["Threshold"]) == ("p99", 1)
    errors = next(alarms[k]["Properties"] for k in alarm_ids if k.startswith("High5xx"))
    assert errors["Threshold"] == 0.01


def test_replica_lag_alarm_as_in_the_prometheus_rules(stage: Synthesized) -> None:
    lag = [
        a["Properties"]
        for k, a in stage.resources("AWS::CloudWatch::Alarm").items()
        if "Lagging" in k
    ]
    assert lag
    assert all((a["MetricName"], a["Threshold"]) == ("ReplicaLag", 5) for a in lag)


def test_the_smoke_hook_runs_make_smoke_against_the_test_listener(stage: Synthesized) -> None:
    (project,) = stage.resources("AWS::CodeBuild::Project").values()
    spec = json.loads(project["Properties"]["Source"]["BuildSpec"])
    assert spec["phases"]["build"]["commands"] == ['bash smoke.sh "$BASE_URL"']
    assert "put-lifecycle-event-hook-execution-status" in " ".join(
        spec["phases"]["post_build"]["commands"]
    )
    variables = {
        v["Name"]: v["Value"] for v in project["Properties"]["Environment"]["EnvironmentVariables"]
    }
    assert variables["BASE_URL"].endswith(":9443")
    assert project["Properties"]["VpcConfig"]
    (hook,) = [
        f for k, f in stage.resources("AWS::Lambda::Function").items() if k.startswith("SmokeHook")
    ]
    assert "start_build" in hook["Properties"]["Code"]["ZipFile"]
    # The only names AWSCodeDeployRoleForECS lets CodeDeploy invoke.
    assert hook["Properties"]["FunctionName"].startswith("CodeDeployHook_")


def test_metrics_are_refused_on_every_public_listener(stage: Synthesized) -> None:
    rules = [
        r["Properties"]
        for r in stage.resources("AWS::ElasticLoadBalancingV2::ListenerRule").values()
    ]
    assert len(rules) == 2  # the live and the test listener
    for rule in rules:
        (condition,) = rule["Conditions"]
        assert set(condition["PathPatternConfig"]["Values"]) == {"*/metrics*", "*%*"}
        assert rule["Actions"][0]["FixedResponseConfig"]["StatusCode"] == "404"
        assert rule["Priority"] == 1


def test_app_port_open_only_to_the_load_balancer_and_the_scraper(stage: Synthesized) -> None:
    groups = stage.resources("AWS::EC2::SecurityGroup")
    sources = set()
    for rule in stage.resources("AWS::EC2::SecurityGroupIngress").values():
        properties = rule["Properties"]
        if properties.get("FromPort") == 8000:
            assert "CidrIp" not in properties
            sources.add(properties["SourceSecurityGroupId"]["Fn::GetAtt"][0])
    assert {_name(s) for s in sources} == {
        "LoadBalancerSecurityGroup",
        "MetricsScraper",
    }
    assert all(s in groups for s in sources)


def test_test_listener_is_not_open_to_the_internet(stage: Synthesized) -> None:
    (alb_group,) = [
        g["Properties"]
        for k, g in stage.resources("AWS::EC2::SecurityGroup").items()
        if k.startswith("LoadBalancerSecurityGroup")
    ]
    test_rules = [r for r in alb_group["SecurityGroupIngress"] if r["FromPort"] == 9443]
    assert test_rules
    assert all(r["CidrIp"] != "0.0.0.0/0" for r in test_rules)


def test_alarms_can_publish_to_their_encrypted_topic(stage: Synthesized) -> None:
    (topic,) = stage.resources("AWS::SNS::Topic").values()
    key_id = topic["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
    statements = stage.json["Resources"][key_id]["Properties"]["KeyPolicy"]["Statement"]
    cloudwatch = [
        s for s in statements if s["Principal"].get("Service") == "cloudwatch.amazonaws.com"
    ]
    assert cloudwatch
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(cloudwatch[0]["Action"])
    for alarm in stage.resources("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id(stage)}]


def topic_id(stage: Synthesized) -> str:
    """The logical id of the alarm topic."""
    (logical_id,) = stage.resources("AWS::SNS::Topic")
    return logical_id
