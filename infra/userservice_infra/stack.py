"""The whole production stack of the user service, one instance per stage."""

import json
from pathlib import Path

from aws_cdk import (
    CfnOutput,
    Duration,
    Fn,
    RemovalPolicy,
    Size,
    Stack,
)
from aws_cdk import aws_amazonmq as amazonmq
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from userservice_infra.config import StageConfig
from userservice_infra.nag import accept_findings
from userservice_infra.settings import TASK_TMP, plain_settings, ssm_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_PORT = 8000
WORKER_METRICS_PORT = 9808
REDIS_PORT = 6379
AMQPS_PORT = 5671
# The test listener CodeDeploy routes the new (green) tasks to before the switch.
TEST_LISTENER_PORT = 9443
# The image's entrypoint on ECS: fills the connection templates (scripts/ecs_entrypoint.py).
ENTRYPOINT = ["python", "scripts/ecs_entrypoint.py"]
WORKER_QUEUES = "events,webhooks,housekeeping"
RETENTION_DAYS = {
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
}


class RedisStore(Construct):
    """An ElastiCache Redis replication group: AUTH token in Secrets Manager, TLS, Multi-AZ.

    Exposes what a client needs as a URL template plus the secret's JSON, so moving one of
    the two stores (the broker, say, to Amazon MQ) replaces this construct and its template
    and nothing that consumes it.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        node_type: str,
        maxmemory_policy: str,
        database: int,
        url_query: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        self.secret = secretsmanager.Secret(
            self,
            "AuthToken",
            description=f"AUTH token of the {construct_id} Redis ({{password}} in its URL).",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({}),
                generate_string_key="password",
                # ElastiCache tokens refuse most punctuation; length carries the strength.
                exclude_punctuation=True,
                password_length=64,
            ),
        )
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description=f"{construct_id} Redis: reachable only from the tasks that use it",
            allow_all_outbound=False,
        )
        subnet_group = elasticache.CfnSubnetGroup(
            self,
            "Subnets",
            description=f"{construct_id} Redis in the isolated subnets",
            subnet_ids=vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids,
        )
        parameters = elasticache.CfnParameterGroup(
            self,
            "Parameters",
            cache_parameter_group_family="redis7",
            description=f"{construct_id} Redis: maxmemory-policy {maxmemory_policy}",
            properties={"maxmemory-policy": maxmemory_policy},
        )
        self.replication_group = elasticache.CfnReplicationGroup(
            self,
            "ReplicationGroup",
            replication_group_description=f"userservice {construct_id}",
            engine="redis",
            engine_version="7.1",
            cache_node_type=node_type,
            # A primary and a replica in another zone; failover promotes the replica.
            num_cache_clusters=2,
            automatic_failover_enabled=True,
            multi_az_enabled=True,
            transit_encryption_enabled=True,
            at_rest_encryption_enabled=True,
            auth_token=self.secret.secret_value_from_json("password").unsafe_unwrap(),
            port=REDIS_PORT,
            cache_subnet_group_name=subnet_group.ref,
            cache_parameter_group_name=parameters.ref,
            security_group_ids=[self.security_group.security_group_id],
            snapshot_retention_limit=1,
            auto_minor_version_upgrade=True,
        )
        host = self.replication_group.attr_primary_end_point_address
        self.url_template = f"rediss://:{{password}}@{host}:{REDIS_PORT}/{database}{url_query}"

    def allow_from(self, *peers: ec2.IConnectable) -> None:
        """Let these tasks reach the store's port, and nothing else."""
        for peer in peers:
            self.security_group.connections.allow_from(
                peer, ec2.Port.tcp(REDIS_PORT), "Redis from the tasks that use it"
            )


class RabbitMQBroker(Construct):
    """Amazon MQ for RabbitMQ, the Celery broker: a three-node cluster across zones (quorum
    queues keep a majority when one node is lost) or, for a small stage, one node.

    TLS only (amqps://), reachable only from the tasks that use it. Exposes a URL template
    plus the secret's JSON, as RedisStore does, so the tasks fill it the same way.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        instance_type: str,
        cluster: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.secret = secretsmanager.Secret(
            self,
            "Credentials",
            description=f"User and password of the {construct_id} (in its amqps:// URL).",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"username": "userservice"}),
                generate_string_key="password",
                # Amazon MQ refuses commas, colons and equals signs; length carries the strength.
                exclude_punctuation=True,
                password_length=64,
            ),
        )
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description=f"{construct_id}: reachable only from the tasks that use it",
            allow_all_outbound=False,
        )
        subnets = vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids
        self.broker = amazonmq.CfnBroker(
            self,
            "Broker",
            broker_name=f"{Stack.of(self).stack_name}-{construct_id}".lower(),
            engine_type="RABBITMQ",
            engine_version="3.13",
            host_instance_type=instance_type,
            deployment_mode="CLUSTER_MULTI_AZ" if cluster else "SINGLE_INSTANCE",
            subnet_ids=subnets if cluster else subnets[:1],
            security_groups=[self.security_group.security_group_id],
            publicly_accessible=False,
            auto_minor_version_upgrade=True,
            logs=amazonmq.CfnBroker.LogListProperty(general=True),
            users=[
                amazonmq.CfnBroker.UserProperty(
                    username="userservice",
                    password=self.secret.secret_value_from_json("password").unsafe_unwrap(),
                )
            ],
        )
        # "amqps://b-....mq.REGION.amazonaws.com:5671" without its scheme.
        endpoint = Fn.select(1, Fn.split("://", Fn.select(0, self.broker.attr_amqp_endpoints)))
        self.url_template = f"amqps://{{username}}:{{password}}@{endpoint}/"

    def allow_from(self, *peers: ec2.IConnectable) -> None:
        """Let these tasks reach AMQP over TLS, and nothing else."""
        for peer in peers:
            self.security_group.connections.allow_from(
                peer, ec2.Port.tcp(AMQPS_PORT), "AMQPS from the tasks that use it"
            )


class UserServiceStack(Stack):
    """Network, database, Redis, ECS services, blue-green releases and alarms of one stage."""

    def __init__(self, scope: Construct, construct_id: str, *, stage: StageConfig) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"User service, {stage.name}",
            env={"account": stage.account, "region": stage.region},
        )
        self.stage = stage
        production_like = stage.deletion_protection
        self.removal_policy = RemovalPolicy.RETAIN if production_like else RemovalPolicy.DESTROY

        self.vpc = self._network()
        # A key of our own: the AWS-managed SNS key's policy does not let CloudWatch
        # alarms publish to a topic it encrypts.
        alarm_key = kms.Key(
            self,
            "AlarmTopicKey",
            enable_key_rotation=True,
            removal_policy=self.removal_policy,
        )
        alarm_key.grant(
            iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*"
        )
        self.alarm_topic = sns.Topic(
            self,
            "Alarms",
            display_name=f"userservice {stage.name} alarms",
            enforce_ssl=True,
            master_key=alarm_key,
        )
        self.task_groups = {
            name: ec2.SecurityGroup(
                self, f"{name.title()}Tasks", vpc=self.vpc, description=f"userservice {name} tasks"
            )
            for name in ("web", "worker", "beat", "migrate")
        }
        # Prometheus (or any scraper) joins this group to reach /metrics and the worker's port.
        self.scraper_group = ec2.SecurityGroup(
            self, "MetricsScraper", vpc=self.vpc, description="Scrapes userservice metrics"
        )
        self.database = self._database()
        self.cache = RedisStore(
            self,
            "Cache",
            vpc=self.vpc,
            node_type=stage.cache_node_type,
            # A cache may drop any key under memory pressure.
            maxmemory_policy="allkeys-lru",
            database=0,
        )
        # RabbitMQ, not Redis: a killed worker's tasks come back the moment its connection
        # drops, and a publish returns once the broker has confirmed it (docs/events.md).
        self.broker = RabbitMQBroker(
            self,
            "Broker",
            vpc=self.vpc,
            instance_type=stage.broker_node_type,
            cluster=stage.broker_cluster,
        )
        self.cache.allow_from(self.task_groups["web"], self.task_groups["worker"])
        self.broker.allow_from(
            self.task_groups["web"], self.task_groups["worker"], self.task_groups["beat"]
        )

        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=self.vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )
        self.image = ecs.ContainerImage.from_ecr_repository(
            ecr.Repository.from_repository_name(self, "Repository", stage.image_repository),
            stage.image_tag,
        )
        self.container_environment, self.container_secrets = self._settings()
        self.task_definitions: dict[str, ecs.FargateTaskDefinition] = {}

        self.load_balancer, listener, test_listener, blue, green = self._load_balancer()
        self.web = self._web_service(blue)
        self.worker = self._worker_service()
        self.beat = self._beat_service()
        self._migrate_task()
        alarms = self._alarms()
        self._blue_green(listener, test_listener, blue, green, alarms)
        self._outputs()
        accept_findings(self)

    def _outputs(self) -> None:
        """What a release needs (docs/deploy.md, "AWS"), so it never digs in the console."""
        outputs = {
            "Cluster": self.cluster.cluster_name,
            "TaskSubnets": ",".join(
                self.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnet_ids
            ),
            "MigrateSecurityGroup": self.task_groups["migrate"].security_group_id,
            "DeployApplication": self.deployment_group.application.application_name,
            "DeployGroup": self.deployment_group.deployment_group_name,
            "SmokeHook": self.smoke_hook.function_arn,
            "WorkerService": self.worker.service_name,
            "BeatService": self.beat.service_name,
            "LoadBalancerDns": self.load_balancer.load_balancer_dns_name,
            "MetricsScraperSecurityGroup": self.scraper_group.security_group_id,
            "AlarmTopic": self.alarm_topic.topic_arn,
        }
        for name, value in outputs.items():
            CfnOutput(self, f"{name}Output", key=name, value=value)

    # --- Network --------------------------------------------------------------------

    def _network(self) -> ec2.Vpc:
        """Two or more zones: public (load balancer, NAT), private (tasks), isolated (data)."""
        vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.40.0.0/16"),
            # Named zones, not max_azs: choosing zones must not need an AWS lookup.
            availability_zones=self.stage.availability_zones,
            nat_gateways=self.stage.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                ),
                ec2.SubnetConfiguration(
                    name="tasks", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20
                ),
                ec2.SubnetConfiguration(
                    name="data", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                ),
            ],
            restrict_default_security_group=True,
        )
        vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(
                logs.LogGroup(
                    self,
                    "FlowLogs",
                    retention=self._retention(),
                    removal_policy=self.removal_policy,
                )
            ),
        )
        return vpc

    def _nat_addresses(self) -> list[str]:
        """The NAT gateways' public IPs: tasks and builds reach the public listeners from these."""
        addresses = []
        for subnet in self.vpc.public_subnets:
            eip = subnet.node.try_find_child("EIP")
            if isinstance(eip, ec2.CfnEIP):
                addresses.append(eip.ref)
        return addresses

    def _retention(self) -> logs.RetentionDays:
        """The stage's log retention; cdk.json names it in days (one of RETENTION_DAYS)."""
        return RETENTION_DAYS[self.stage.log_retention_days]

    # --- Database ---------------------------------------------------------------------

    def _database(self) -> rds.DatabaseInstance:
        """PostgreSQL 15: Multi-AZ primary, read replicas, encrypted, backed up, rotated."""
        group = ec2.SecurityGroup(
            self,
            "DatabaseSecurityGroup",
            vpc=self.vpc,
            description="PostgreSQL: reachable only from web, worker and migrate tasks",
            allow_all_outbound=False,
        )
        for name in ("web", "worker", "migrate"):
            group.connections.allow_from(
                self.task_groups[name], ec2.Port.tcp(5432), f"PostgreSQL from {name}"
            )
        engine = rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_15)
        parameters = rds.ParameterGroup(
            self,
            "DatabaseParameters",
            engine=engine,
            # Plain-text connections are refused; libpq's default sslmode (prefer) uses TLS.
            parameters={"rds.force_ssl": "1"},
        )
        isolated = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        instance_type = ec2.InstanceType(self.stage.database_instance_type)
        identifier = f"userservice-{self.stage.name}"
        # Created here with a retention, rather than by RDS without one (or by CDK's
        # log-retention Lambda).
        exported_logs = {
            name: logs.LogGroup(
                self,
                f"Database{name.title()}Logs",
                log_group_name=f"/aws/rds/instance/{identifier}/{name}",
                retention=self._retention(),
                removal_policy=self.removal_policy,
            )
            for name in ("postgresql", "upgrade")
        }
        primary = rds.DatabaseInstance(
            self,
            "Database",
            engine=engine,
            instance_type=instance_type,
            vpc=self.vpc,
            vpc_subnets=isolated,
            security_groups=[group],
            multi_az=True,
            storage_encrypted=True,
            allocated_storage=self.stage.database_storage_gib,
            max_allocated_storage=self.stage.database_storage_gib * 4,
            storage_type=rds.StorageType.GP3,
            database_name="userservice",
            credentials=rds.Credentials.from_generated_secret("userservice"),
            parameter_group=parameters,
            backup_retention=Duration.days(self.stage.backup_retention_days),
            deletion_protection=self.stage.deletion_protection,
            removal_policy=(
                RemovalPolicy.SNAPSHOT if self.stage.deletion_protection else RemovalPolicy.DESTROY
            ),
            instance_identifier=identifier,
            cloudwatch_logs_exports=list(exported_logs),
            auto_minor_version_upgrade=True,
            publicly_accessible=False,
        )
        for log_group in exported_logs.values():
            primary.node.add_dependency(log_group)
        primary.add_rotation_single_user(
            automatically_after=Duration.days(30),
            # Not the database's isolated subnets: the rotation function calls Secrets Manager.
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
        )
        self.replicas = [
            rds.DatabaseInstanceReadReplica(
                self,
                f"Replica{index}",
                source_database_instance=primary,
                instance_type=instance_type,
                vpc=self.vpc,
                vpc_subnets=isolated,
                security_groups=[group],
                # Encrypted because the source is: RDS refuses the property on a replica.
                parameter_group=parameters,
                deletion_protection=self.stage.deletion_protection,
                removal_policy=(
                    RemovalPolicy.RETAIN
                    if self.stage.deletion_protection
                    else RemovalPolicy.DESTROY
                ),
                auto_minor_version_upgrade=True,
                publicly_accessible=False,
            )
            for index in range(self.stage.database_replicas)
        ]
        return primary

    # --- Settings ---------------------------------------------------------------------

    def _settings(self) -> tuple[dict[str, str], dict[str, ecs.Secret]]:
        """The containers' environment and secrets: every setting of docs/settings.md."""
        stage = self.stage
        environment = plain_settings(
            domain_name=stage.domain_name, web_concurrency=stage.web_concurrency
        )
        primary = self.database.instance_endpoint
        database_path = "{username}:{password}@%s/userservice"
        environment["DATABASE_URL_TEMPLATE"] = "postgres://" + database_path % (
            f"{primary.hostname}:{primary.port}"
        )
        environment["DATABASE_REPLICA_URLS_TEMPLATE"] = ",".join(
            "postgres://" + database_path % f"{replica.instance_endpoint.hostname}:"
            f"{replica.instance_endpoint.port}"
            for replica in self.replicas
        )
        environment["REDIS_URL_TEMPLATE"] = self.cache.url_template
        environment["CELERY_BROKER_URL_TEMPLATE"] = self.broker.url_template

        if self.database.secret is None:
            raise ValueError("the database's generated credentials have no secret")
        django_secret_key = secretsmanager.Secret(
            self,
            "DjangoSecretKey",
            description="DJANGO_SECRET_KEY: signs sessions, CSRF tokens and signed cookies.",
            generate_secret_string=secretsmanager.SecretStringGenerator(password_length=64),
        )
        metrics_token = secretsmanager.Secret(
            self,
            "MetricsToken",
            description="METRICS_TOKEN: the Bearer token Prometheus sends to /metrics.",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=48, exclude_punctuation=True
            ),
        )
        secrets = {
            "DJANGO_SECRET_KEY": ecs.Secret.from_secrets_manager(django_secret_key),
            "METRICS_TOKEN": ecs.Secret.from_secrets_manager(metrics_token),
            "DATABASE_URL_CREDENTIALS": ecs.Secret.from_secrets_manager(self.database.secret),
            "DATABASE_REPLICA_URLS_CREDENTIALS": ecs.Secret.from_secrets_manager(
                self.database.secret
            ),
            "REDIS_URL_CREDENTIALS": ecs.Secret.from_secrets_manager(self.cache.secret),
            "CELERY_BROKER_URL_CREDENTIALS": ecs.Secret.from_secrets_manager(self.broker.secret),
        }
        for name, value in ssm_settings().items():
            parameter = ssm.StringParameter(
                self,
                name.title().replace("_", ""),
                parameter_name=f"/userservice/{stage.name}/{name}",
                string_value=value,
                description=f"{name} (docs/settings.md)",
            )
            secrets[name] = ecs.Secret.from_ssm_parameter(parameter)
        self.django_secret_key, self.metrics_token = django_secret_key, metrics_token
        return environment, secrets

    # --- Tasks and services ------------------------------------------------------------

    def _task_definition(
        self,
        name: str,
        *,
        cpu: int,
        memory_mib: int,
        command: list[str],
        stop_timeout: Duration,
        port: int | None = None,
        health_check: ecs.HealthCheck | None = None,
    ) -> ecs.FargateTaskDefinition:
        """A task definition of the image running one process, with every setting.

        Non-root (the image's uid), read-only root filesystem with a writable /tmp volume,
        JSON logs to their own CloudWatch log group unchanged (one event a line).
        """
        task = ecs.FargateTaskDefinition(
            self,
            f"{name.title()}TaskDefinition",
            family=f"userservice-{self.stage.name}-{name}",
            cpu=cpu,
            memory_limit_mib=memory_mib,
        )
        task.add_volume(name="tmp")
        log_group = logs.LogGroup(
            self,
            f"{name.title()}Logs",
            log_group_name=f"/userservice/{self.stage.name}/{name}",
            retention=self._retention(),
            removal_policy=self.removal_policy,
        )
        container = task.add_container(
            name,
            image=self.image,
            command=command,
            environment=self.container_environment,
            secrets=self.container_secrets,
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix=name,
                log_group=log_group,
                # A slow log pipe must not block the process writing to it.
                mode=ecs.AwsLogDriverMode.NON_BLOCKING,
                max_buffer_size=Size.mebibytes(25),
            ),
            readonly_root_filesystem=True,
            user="10001:10001",
            stop_timeout=stop_timeout,
            health_check=health_check,
            port_mappings=[ecs.PortMapping(container_port=port)] if port else None,
        )
        container.add_mount_points(
            ecs.MountPoint(container_path=TASK_TMP, source_volume="tmp", read_only=False)
        )
        self.task_definitions[name] = task
        return task

    def _web_service(self, blue: elbv2.ApplicationTargetGroup) -> ecs.FargateService:
        """gunicorn behind the load balancer; CodeDeploy replaces its tasks blue-green."""
        stage = self.stage
        task = self._task_definition(
            "web",
            cpu=stage.web_cpu,
            memory_mib=stage.web_memory_mib,
            command=[
                *ENTRYPOINT,
                "--allow-task-ip",
                "--",
                "gunicorn",
                "-c",
                "config/gunicorn.py",
                "config.wsgi",
            ],
            # > GUNICORN_GRACEFUL_TIMEOUT (25 s): in-flight requests finish before SIGKILL.
            stop_timeout=Duration.seconds(40),
            port=APP_PORT,
            # Liveness: /healthz (no dependencies), as the image's HEALTHCHECK does it.
            health_check=ecs.HealthCheck(
                command=["CMD", "python", "scripts/healthcheck.py"],
                interval=Duration.seconds(15),
                timeout=Duration.seconds(5),
                retries=3,
                start_period=Duration.seconds(30),
            ),
        )
        self.task_groups["web"].connections.allow_from(
            self.scraper_group, ec2.Port.tcp(APP_PORT), "/metrics from the scraper, with the token"
        )
        service = ecs.FargateService(
            self,
            "Web",
            cluster=self.cluster,
            task_definition=task,
            desired_count=stage.web_min_tasks,
            security_groups=[self.task_groups["web"]],
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            deployment_controller=ecs.DeploymentController(
                type=ecs.DeploymentControllerType.CODE_DEPLOY
            ),
            min_healthy_percent=100,
            health_check_grace_period=Duration.seconds(60),
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )
        service.attach_to_application_target_group(blue)
        scaling = service.auto_scale_task_count(
            min_capacity=stage.web_min_tasks, max_capacity=stage.web_max_tasks
        )
        scaling.scale_on_cpu_utilization(
            "Cpu",
            target_utilization_percent=70,
            scale_in_cooldown=Duration.seconds(300),
            scale_out_cooldown=Duration.seconds(300),
        )
        return service

    def _worker_service(self) -> ecs.FargateService:
        """Celery workers for every queue, scaled on CPU (docs/deploy.md says why)."""
        stage = self.stage
        task = self._task_definition(
            "worker",
            cpu=stage.worker_cpu,
            memory_mib=stage.worker_memory_mib,
            command=[*ENTRYPOINT, "--", "celery", "-A", "config", "worker", "-Q", WORKER_QUEUES],
            # Celery's warm shutdown finishes running tasks (CELERY_TASK_TIME_LIMIT is 60 s).
            stop_timeout=Duration.seconds(90),
        )
        self.task_groups["worker"].connections.allow_from(
            self.scraper_group, ec2.Port.tcp(WORKER_METRICS_PORT), "Celery task metrics"
        )
        service = self._background_service("Worker", task, desired_count=stage.worker_min_tasks)
        scaling = service.auto_scale_task_count(
            min_capacity=stage.worker_min_tasks, max_capacity=stage.worker_max_tasks
        )
        scaling.scale_on_cpu_utilization(
            "Cpu",
            target_utilization_percent=70,
            scale_in_cooldown=Duration.seconds(300),
            scale_out_cooldown=Duration.seconds(300),
        )
        return service

    def _beat_service(self) -> ecs.FargateService:
        """Exactly one Celery beat: the old task stops before a new one starts."""
        task = self._task_definition(
            "beat",
            cpu=256,
            memory_mib=512,
            command=[
                *ENTRYPOINT,
                "--",
                "celery",
                "-A",
                "config",
                "beat",
                "-s",
                f"{TASK_TMP}/celerybeat-schedule",
            ],
            stop_timeout=Duration.seconds(30),
        )
        # Two schedulers would enqueue every periodic task twice: 0-100% means stop first.
        return self._background_service(
            "Beat", task, desired_count=1, min_healthy_percent=0, max_healthy_percent=100
        )

    def _background_service(
        self,
        construct_id: str,
        task: ecs.FargateTaskDefinition,
        *,
        desired_count: int,
        min_healthy_percent: int = 100,
        max_healthy_percent: int = 200,
    ) -> ecs.FargateService:
        """A service with no load balancer, on the family's latest revision.

        The latest revision, not the one this template registers: a release registers the
        new image's revisions first and moves these services only after the migration and
        the web switch (docs/deploy.md, "AWS"); a failed rollout rolls itself back.
        """
        return ecs.FargateService(
            self,
            construct_id,
            cluster=self.cluster,
            task_definition=task,
            task_definition_revision=ecs.TaskDefinitionRevision.LATEST,
            desired_count=desired_count,
            security_groups=[self.task_groups[construct_id.lower()]],
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            min_healthy_percent=min_healthy_percent,
            max_healthy_percent=max_healthy_percent,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )

    def _migrate_task(self) -> None:
        """The one-off migration, run (`aws ecs run-task`) before each release switches."""
        self._task_definition(
            "migrate",
            cpu=256,
            memory_mib=512,
            command=[*ENTRYPOINT, "--", "python", "manage.py", "migrate", "--noinput"],
            stop_timeout=Duration.seconds(30),
        )

    # --- Load balancer and releases ------------------------------------------------------

    def _load_balancer(
        self,
    ) -> tuple[
        elbv2.ApplicationLoadBalancer,
        elbv2.ApplicationListener,
        elbv2.ApplicationListener,
        elbv2.ApplicationTargetGroup,
        elbv2.ApplicationTargetGroup,
    ]:
        """Internet-facing ALB: HTTPS 443 (live), HTTPS 9443 (test, from inside), HTTP → HTTPS."""
        group = ec2.SecurityGroup(
            self, "LoadBalancerSecurityGroup", vpc=self.vpc, description="userservice ALB"
        )
        group.add_ingress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS")
        group.add_ingress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(80), "HTTP, redirected")
        # The test listener answers only the VPC's own NAT addresses (the smoke build).
        for address in self._nat_addresses():
            group.add_ingress_rule(
                ec2.Peer.ipv4(f"{address}/32"),
                ec2.Port.tcp(TEST_LISTENER_PORT),
                "Test listener, from the VPC's NAT",
            )
        logs_bucket = s3.Bucket(
            self,
            "LoadBalancerLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            removal_policy=self.removal_policy,
            auto_delete_objects=False,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
        )
        alb = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=self.vpc,
            internet_facing=True,
            security_group=group,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            drop_invalid_header_fields=True,
            deletion_protection=self.stage.deletion_protection,
        )
        alb.log_access_logs(logs_bucket)
        self.load_balancer_group, self.load_balancer_logs = group, logs_bucket
        self.task_groups["web"].connections.allow_from(
            group, ec2.Port.tcp(APP_PORT), "From the load balancer"
        )

        def target_group(colour: str) -> elbv2.ApplicationTargetGroup:
            return elbv2.ApplicationTargetGroup(
                self,
                f"{colour}TargetGroup",
                vpc=self.vpc,
                port=APP_PORT,
                protocol=elbv2.ApplicationProtocol.HTTP,
                target_type=elbv2.TargetType.IP,
                deregistration_delay=Duration.seconds(30),
                # Readiness: 200 while the primary answers ("ok" or "degraded"), else 503.
                health_check=elbv2.HealthCheck(
                    path="/readyz",
                    healthy_http_codes="200",
                    interval=Duration.seconds(10),
                    timeout=Duration.seconds(5),
                    healthy_threshold_count=2,
                    unhealthy_threshold_count=3,
                ),
            )

        blue, green = target_group("Blue"), target_group("Green")
        certificate = acm.Certificate.from_certificate_arn(
            self, "Certificate", self.stage.certificate_arn
        )
        alb.add_listener(
            "Http",
            port=80,
            open=False,
            default_action=elbv2.ListenerAction.redirect(
                protocol="HTTPS", port="443", permanent=True
            ),
        )
        listener = alb.add_listener(
            "Https",
            port=443,
            open=False,
            certificates=[certificate],
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
            default_target_groups=[blue],
        )
        test_listener = alb.add_listener(
            "Test",
            port=TEST_LISTENER_PORT,
            protocol=elbv2.ApplicationProtocol.HTTPS,
            open=False,
            certificates=[certificate],
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
            default_target_groups=[green],
        )
        for each in (listener, test_listener):
            # /metrics stays inside the VPC: scrapers reach the tasks directly. Any path
            # with a percent sign is refused too, so no encoding of "metrics" slips past.
            each.add_action(
                "DenyMetrics",
                priority=1,
                conditions=[elbv2.ListenerCondition.path_patterns(["*/metrics*", "*%*"])],
                action=elbv2.ListenerAction.fixed_response(
                    404,
                    content_type="application/json",
                    message_body=json.dumps(
                        {"error": {"code": "not_found", "message": "Not found."}}
                    ),
                ),
            )
        return alb, listener, test_listener, blue, green

    def _alarms(self) -> list[cloudwatch.Alarm]:
        """The Prometheus rules CloudWatch can express; the first two also roll releases back."""
        metrics = self.load_balancer.metrics
        period = Duration.minutes(5)
        error_ratio = cloudwatch.MathExpression(
            expression="IF(requests > 0, errors / requests, 0)",
            using_metrics={
                "errors": metrics.http_code_target(
                    elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=period, statistic="Sum"
                ),
                "requests": metrics.request_count(period=period, statistic="Sum"),
            },
            period=period,
            label="5xx ratio",
        )
        alarms = [
            cloudwatch.Alarm(
                self,
                "High5xxRatio",
                alarm_description="Over 1% of responses are 5xx for 5 minutes.",
                metric=error_ratio,
                threshold=0.01,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            cloudwatch.Alarm(
                self,
                "HighLatencyP99",
                alarm_description="p99 response time over 1 s for 10 minutes.",
                metric=metrics.target_response_time(period=period, statistic="p99"),
                threshold=1,
                evaluation_periods=2,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
        ]
        for index, replica in enumerate(self.replicas):
            alarms.append(
                cloudwatch.Alarm(
                    self,
                    f"Replica{index}Lagging",
                    alarm_description="A read replica is over 5 s behind for 5 minutes.",
                    metric=replica.metric("ReplicaLag", period=period, statistic="Maximum"),
                    threshold=5,
                    evaluation_periods=1,
                    comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                    treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
                )
            )
        for alarm in alarms:
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.alarm_topic))
        return alarms

    def _blue_green(
        self,
        listener: elbv2.ApplicationListener,
        test_listener: elbv2.ApplicationListener,
        blue: elbv2.ApplicationTargetGroup,
        green: elbv2.ApplicationTargetGroup,
        alarms: list[cloudwatch.Alarm],
    ) -> None:
        """CodeDeploy blue-green for web, the smoke test as its AfterAllowTestTraffic hook."""
        application = codedeploy.EcsApplication(
            self, "Deploy", application_name=f"userservice-{self.stage.name}"
        )
        self.deployment_group = codedeploy.EcsDeploymentGroup(
            self,
            "WebDeployment",
            application=application,
            deployment_group_name="web",
            service=self.web,
            blue_green_deployment_config=codedeploy.EcsBlueGreenDeploymentConfig(
                blue_target_group=blue,
                green_target_group=green,
                listener=listener,
                test_listener=test_listener,
                # The old tasks stay this long after the switch: the instant-rollback window.
                termination_wait_time=Duration.minutes(self.stage.blue_termination_wait_minutes),
            ),
            deployment_config=(
                codedeploy.EcsDeploymentConfig.CANARY_10_PERCENT_5_MINUTES
                if self.stage.canary_release
                else codedeploy.EcsDeploymentConfig.ALL_AT_ONCE
            ),
            alarms=alarms[:2],
            auto_rollback=codedeploy.AutoRollbackConfig(
                failed_deployment=True, deployment_in_alarm=True, stopped_deployment=True
            ),
        )
        self.smoke_hook = self._smoke_hook()

    def _smoke_hook(self) -> lambda_.Function:
        """`make smoke`'s script in CodeBuild against the test listener, started by a Lambda.

        CodeDeploy hooks must be Lambda functions, and a Lambda runtime has neither bash
        nor curl; CodeBuild's standard image has both, runs in the VPC and reports the
        hook's result itself, so the Lambda only starts it.
        """
        scripts = s3_assets.Asset(
            self,
            "SmokeScripts",
            path=str(REPO_ROOT / "scripts"),
            exclude=["*", "!smoke.sh"],
        )
        group = ec2.SecurityGroup(
            self, "SmokeBuild", vpc=self.vpc, description="Smoke test builds (egress only)"
        )
        build_key = kms.Key(
            self, "SmokeBuildKey", enable_key_rotation=True, removal_policy=self.removal_policy
        )
        project = codebuild.Project(
            self,
            "Smoke",
            description="make smoke against the test listener; reports the CodeDeploy hook",
            source=codebuild.Source.s3(bucket=scripts.bucket, path=scripts.s3_object_key),
            vpc=self.vpc,
            subnet_selection=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[group],
            encryption_key=build_key,
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                compute_type=codebuild.ComputeType.SMALL,
            ),
            environment_variables={
                "BASE_URL": codebuild.BuildEnvironmentVariable(
                    value=f"https://{self.stage.domain_name}:{TEST_LISTENER_PORT}"
                ),
            },
            timeout=Duration.minutes(10),
            build_spec=codebuild.BuildSpec.from_object(
                {
                    "version": "0.2",
                    "phases": {
                        # `make smoke BASE_URL=...` is exactly this script.
                        "build": {"commands": ['bash smoke.sh "$BASE_URL"']},
                        "post_build": {
                            "commands": [
                                'if [ "$CODEBUILD_BUILD_SUCCEEDING" = 1 ]; then STATUS=Succeeded;'
                                " else STATUS=Failed; fi",
                                "aws deploy put-lifecycle-event-hook-execution-status"
                                ' --deployment-id "$DEPLOYMENT_ID"'
                                ' --lifecycle-event-hook-execution-id "$HOOK_EXECUTION_ID"'
                                ' --status "$STATUS"',
                            ]
                        },
                    },
                }
            ),
            logging=codebuild.LoggingOptions(
                cloud_watch=codebuild.CloudWatchLoggingOptions(
                    log_group=logs.LogGroup(
                        self,
                        "SmokeLogs",
                        retention=self._retention(),
                        removal_policy=self.removal_policy,
                    )
                )
            ),
        )
        report_status = iam.PolicyStatement(
            actions=["codedeploy:PutLifecycleEventHookExecutionStatus"],
            resources=[self.deployment_group.deployment_group_arn],
        )
        project.add_to_role_policy(report_status)
        hook = lambda_.Function(
            self,
            "SmokeHook",
            # CodeDeploy's managed ECS role may invoke only functions named CodeDeployHook_*.
            function_name=f"CodeDeployHook_userservice-{self.stage.name}-smoke",
            description="CodeDeploy AfterAllowTestTraffic: starts the smoke build",
            runtime=lambda_.Runtime.PYTHON_3_14,
            handler="index.handler",
            code=lambda_.Code.from_inline((Path(__file__).parent / "smoke_hook.py").read_text()),
            timeout=Duration.seconds(30),
            environment={"SMOKE_PROJECT": project.project_name},
            log_group=logs.LogGroup(
                self,
                "SmokeHookLogs",
                retention=self._retention(),
                removal_policy=self.removal_policy,
            ),
        )
        hook.add_to_role_policy(report_status)
        hook.add_to_role_policy(
            iam.PolicyStatement(actions=["codebuild:StartBuild"], resources=[project.project_arn])
        )
        self.smoke_project = project
        return hook
