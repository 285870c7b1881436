"""ECS services: scaling, health checks, beat alone, the migration task, logs."""

from typing import Any

from tests.synthesized import Synthesized


def _scaling_policies(stage: Synthesized) -> list[dict[str, Any]]:
    return [
        r["Properties"]
        for r in stage.resources("AWS::ApplicationAutoScaling::ScalingPolicy").values()
    ]


def test_web_scales_2_to_10_on_cpu_70_with_300s_cooldowns(stage: Synthesized) -> None:
    targets = [
        r["Properties"]
        for r in stage.resources("AWS::ApplicationAutoScaling::ScalableTarget").values()
    ]
    web = [t for t in targets if "Web" in str(t["ResourceId"])]
    assert [(t["MinCapacity"], t["MaxCapacity"]) for t in web] == [(2, 10)]
    configs = [p["TargetTrackingScalingPolicyConfiguration"] for p in _scaling_policies(stage)]
    for config in configs:
        assert config["TargetValue"] == 70
        assert config["ScaleInCooldown"] == 300
        assert config["ScaleOutCooldown"] == 300
        assert (
            config["PredefinedMetricSpecification"]["PredefinedMetricType"]
            == "ECSServiceAverageCPUUtilization"
        )
    assert len(configs) == 2  # web and worker


def test_health_checks_readyz_on_the_load_balancer_healthz_in_the_task(
    stage: Synthesized,
) -> None:
    groups = stage.resources("AWS::ElasticLoadBalancingV2::TargetGroup").values()
    assert [g["Properties"]["HealthCheckPath"] for g in groups] == ["/readyz", "/readyz"]
    web = stage.containers()["web"]
    assert web["HealthCheck"]["Command"] == ["CMD", "python", "scripts/healthcheck.py"]


def test_web_adds_its_own_address_to_allowed_hosts(stage: Synthesized) -> None:
    # The load balancer's health checks send the task's IP as Host.
    command = stage.containers()["web"]["Command"]
    assert command[:4] == ["python", "scripts/ecs_entrypoint.py", "--allow-task-ip", "--"]
    assert command[4:] == ["gunicorn", "-c", "config/gunicorn.py", "config.wsgi"]


def test_every_process_runs_through_the_entrypoint_read_only_non_root(stage: Synthesized) -> None:
    containers = stage.containers()
    assert set(containers) == {"web", "worker", "beat", "migrate"}
    for container in containers.values():
        assert container["Command"][:2] == ["python", "scripts/ecs_entrypoint.py"]
        assert container["ReadonlyRootFilesystem"] is True
        assert container["User"] == "10001:10001"
        assert container["MountPoints"] == [
            {"ContainerPath": "/tmp", "ReadOnly": False, "SourceVolume": "tmp"}  # noqa: S108
        ]
    assert containers["migrate"]["Command"][-3:] == ["manage.py", "migrate", "--noinput"]
    assert "worker" in containers["worker"]["Command"]


def test_logs_go_to_cloudwatch_unchanged(stage: Synthesized) -> None:
    for container in stage.containers().values():
        logging = container["LogConfiguration"]
        assert logging["LogDriver"] == "awslogs"
        # No datetime or multiline pattern: each JSON line the app writes is one event.
        assert not {"awslogs-datetime-format", "awslogs-multiline-pattern"} & set(
            logging["Options"]
        )


def test_beat_runs_alone_and_stops_before_it_starts(stage: Synthesized) -> None:
    services = stage.resources("AWS::ECS::Service")
    beat = next(s["Properties"] for k, s in services.items() if k.startswith("Beat"))
    assert beat["DesiredCount"] == 1
    assert beat["DeploymentConfiguration"]["MinimumHealthyPercent"] == 0
    assert beat["DeploymentConfiguration"]["MaximumPercent"] == 100


def test_web_is_released_by_codedeploy(stage: Synthesized) -> None:
    services = stage.resources("AWS::ECS::Service")
    web = next(s["Properties"] for k, s in services.items() if k.startswith("Web"))
    assert web["DeploymentController"] == {"Type": "CODE_DEPLOY"}
