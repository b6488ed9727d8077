"""The job queue on AWS: reads the stack config, wires the components, exports the endpoints.

Run with `pulumi up` from the repository root (Pulumi.yaml: `main: infra/`). Every key read here
is set in Pulumi.dev.yaml and documented in docs/cloud-deployment.md.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.components.api_service import ApiService, ApiServiceArgs
from infra.components.app_secrets import AppSecrets, AppSecretsArgs
from infra.components.artifacts import Artifacts, ArtifactsArgs
from infra.components.cache import Cache, CacheArgs
from infra.components.cluster import Cluster, ClusterArgs
from infra.components.containers import ContainerSpec, TaskSize
from infra.components.firewall import Firewall, FirewallArgs
from infra.components.iam import (
    Iam,
    IamArgs,
    ServiceAccess,
    api_task_statements,
    metrics_task_statements,
    worker_task_statements,
)
from infra.components.metrics import QueueMetrics
from infra.components.metrics_service import MetricsService, MetricsServiceArgs
from infra.components.network import Network, NetworkArgs
from infra.components.observability import AlarmThresholds, Observability, ObservabilityArgs
from infra.components.registry import Registry, RegistryArgs
from infra.components.workers import WorkerScaling, WorkerService, WorkerServiceArgs
from service.metrics.contract import NAMESPACE
from service.settings import FARGATE_MAX_STOP_TIMEOUT_SECONDS

ROLES = ("api", "worker", "metrics")
API_PORT = 8000
# Fargate's maximum, the same constant the worker validates SHUTDOWN_GRACE_SECONDS against.
WORKER_STOP_TIMEOUT = FARGATE_MAX_STOP_TIMEOUT_SECONDS

cfg = pulumi.Config()
region = pulumi.Config("aws").require("region")
account_id = aws.get_caller_identity().account_id
environment = cfg.require("environment")
prefix = f"{pulumi.get_project()}-{pulumi.get_stack()}"
tags = {"Project": pulumi.get_project(), "Stack": pulumi.get_stack(), "ManagedBy": "pulumi"}
queue_metrics = QueueMetrics(queue=cfg.require("queueName"), environment=environment)
certificate_arn = cfg.get("certificateArn") or None
architecture = cfg.require("cpuArchitecture")

# --- Foundations ------------------------------------------------------------------------------
network = Network(
    prefix,
    NetworkArgs(
        cidr=cfg.require("vpcCidr"),
        az_count=cfg.require_int("azCount"),
        nat_per_az=cfg.require_bool("natPerAz"),
        region=region,
        tags=tags,
    ),
)
firewall = Firewall(
    prefix,
    FirewallArgs(vpc_id=network.vpc_id, api_port=API_PORT, https=bool(certificate_arn), tags=tags),
)
cache_cluster_mode = cfg.require_bool("cacheClusterMode")
cache = Cache(
    prefix,
    CacheArgs(
        vpc_id=network.vpc_id,
        subnet_ids=network.private_subnet_ids,
        client_security_group_ids={
            "api": firewall.api_sg_id,
            "worker": firewall.worker_sg_id,
            "metrics": firewall.metrics_sg_id,
        },
        node_type=cfg.require("cacheNodeType"),
        engine_version=cfg.require("cacheEngineVersion"),
        cluster_mode=cache_cluster_mode,
        shards=cfg.require_int("cacheShards"),
        replicas_per_shard=cfg.require_int("cacheReplicas"),
        snapshot_retention_days=cfg.require_int("cacheSnapshotRetentionDays"),
        tags=tags,
    ),
)
registry = Registry(
    prefix, RegistryArgs(roles=ROLES, keep_images=cfg.require_int("ecrKeepImages"), tags=tags)
)
artifacts = Artifacts(
    prefix, ArtifactsArgs(retention_days=cfg.require_int("artifactRetentionDays"), tags=tags)
)
app_secrets = AppSecrets(prefix, AppSecretsArgs(tags=tags))
cluster = Cluster(
    prefix,
    ClusterArgs(
        roles=ROLES,
        log_retention_days=cfg.require_int("logRetentionDays"),
        container_insights=cfg.require_bool("containerInsights"),
        tags=tags,
    ),
)

# --- IAM --------------------------------------------------------------------------------------
email_from = cfg.require("emailFrom")
ses_identity = cfg.require("sesIdentity")
ses_arn = f"arn:aws:ses:{region}:{account_id}:identity/"
secret_arns = {
    "api": [cache.auth_secret_arn, app_secrets.api_keys_secret_arn],
    "worker": [cache.auth_secret_arn],
    "metrics": [cache.auth_secret_arn],
}
task_statements = {
    "api": api_task_statements(artifacts.bucket_arn),
    "worker": worker_task_statements(
        artifacts.bucket_arn,
        [ses_arn + ses_identity, ses_arn + email_from],
        email_from,
        pulumi.Output.concat(
            f"arn:aws:ecs:{region}:{account_id}:task/", cluster.cluster_name, "/*"
        ),
    ),
    "metrics": metrics_task_statements(NAMESPACE),
}
iam = Iam(
    prefix,
    IamArgs(
        account_id=account_id,
        services={
            role: ServiceAccess(
                repository_arn=registry.repository_arns[role],
                log_group_arn=cluster.log_group_arns[role],
                secret_arns=list(secret_arns[role]),
                task_statements=task_statements[role],
            )
            for role in ROLES
        },
        tags=tags,
    ),
)

# --- Containers -------------------------------------------------------------------------------
image_tag = cfg.require("imageTag")
common_env: dict[str, pulumi.Input[str]] = {
    "ENVIRONMENT": environment,
    "REDIS_HOST": cache.endpoint,
    "REDIS_PORT": str(cache.port),
    "REDIS_TLS": "true",
    # In cluster mode REDIS_HOST is the configuration endpoint; the service finds the queue's slot.
    "REDIS_CLUSTER": "true" if cache_cluster_mode else "false",
    "QUEUE_NAME": queue_metrics.queue,
    "KEY_PREFIX": cfg.require("keyPrefix"),
    "AWS_REGION": region,
}
app_env: dict[str, pulumi.Input[str]] = {
    **common_env,
    "ARTIFACT_BUCKET": artifacts.bucket_name,
    "EMAIL_BACKEND": "ses",
    "EMAIL_FROM": email_from,
}
shutdown_grace = cfg.require_float("shutdownGraceSeconds")
worker_concurrency = cfg.require_int("workerConcurrency")


def container(role: str, env: dict[str, pulumi.Input[str]], **extra: object) -> ContainerSpec:
    """The container of one role, from its ECR repository at the configured tag."""
    secrets: dict[str, pulumi.Input[str]] = {"REDIS_PASSWORD": cache.auth_secret_arn}
    if role == "api":
        secrets["API_KEYS"] = app_secrets.api_keys_secret_arn
    return ContainerSpec(
        name=role,
        image=pulumi.Output.concat(registry.repository_urls[role], ":", image_tag),
        region=region,
        log_group=cluster.log_group_names[role],
        environment=env,
        secrets=secrets,
        **extra,  # type: ignore[arg-type]
    )


def size(role: str) -> TaskSize:
    """The configured Fargate size of one role."""
    return TaskSize(cfg.require_int(f"{role}Cpu"), cfg.require_int(f"{role}Memory"), architecture)


# --- Services ---------------------------------------------------------------------------------
api = ApiService(
    f"{prefix}-api",
    ApiServiceArgs(
        cluster_arn=cluster.cluster_arn,
        cluster_name=cluster.cluster_name,
        vpc_id=network.vpc_id,
        public_subnet_ids=network.public_subnet_ids,
        private_subnet_ids=network.private_subnet_ids,
        alb_sg_id=firewall.alb_sg_id,
        api_sg_id=firewall.api_sg_id,
        container=container(
            "api",
            {**app_env, "HOST": "0.0.0.0", "PORT": str(API_PORT)},  # noqa: S104 - in-container
            port=API_PORT,
            health_check_path="/healthz",
        ),
        size=size("api"),
        execution_role_arn=iam.execution_role_arns["api"],
        task_role_arn=iam.task_role_arns["api"],
        min_count=cfg.require_int("apiMinCount"),
        max_count=cfg.require_int("apiMaxCount"),
        cpu_target_percent=cfg.require_float("apiCpuTargetPercent"),
        requests_per_target=cfg.require_int("apiRequestsPerTarget"),
        certificate_arn=certificate_arn,
        tags=tags,
    ),
)
canary_enabled = cfg.require_bool("canaryEnabled")
worker_scaling = WorkerScaling(
    min_count=cfg.require_int("workerMinCount"),
    max_count=cfg.require_int("workerMaxCount"),
    acceptable_wait_seconds=cfg.require_float("acceptableWaitSeconds"),
    average_job_seconds=cfg.require_float("averageJobSeconds"),
    concurrency=worker_concurrency,
    canary_enabled=canary_enabled,
)
workers = WorkerService(
    f"{prefix}-worker",
    WorkerServiceArgs(
        cluster_arn=cluster.cluster_arn,
        cluster_name=cluster.cluster_name,
        private_subnet_ids=network.private_subnet_ids,
        security_group_id=firewall.worker_sg_id,
        container=container(
            "worker",
            {
                **app_env,
                "WORKER_COUNT": str(cfg.require_int("workerCount")),
                "WORKER_CONCURRENCY": str(worker_concurrency),
                "SHUTDOWN_GRACE_SECONDS": f"{shutdown_grace:g}",
                "LEASE_SECONDS": f"{cfg.require_float('leaseSeconds'):g}",
            },
            stop_timeout=WORKER_STOP_TIMEOUT,
        ),
        size=size("worker"),
        execution_role_arn=iam.execution_role_arns["worker"],
        task_role_arn=iam.task_role_arns["worker"],
        scaling=worker_scaling,
        metrics=queue_metrics,
        shutdown_grace_seconds=shutdown_grace,
        use_spot=cfg.require_bool("workerUseSpot"),
        tags=tags,
    ),
)
metrics_task = MetricsService(
    f"{prefix}-metrics",
    MetricsServiceArgs(
        cluster_arn=cluster.cluster_arn,
        private_subnet_ids=network.private_subnet_ids,
        security_group_id=firewall.metrics_sg_id,
        container=container(
            "metrics",
            {
                **common_env,
                "CLOUDWATCH_ENABLED": "true",
                "METRICS_PERIOD_SECONDS": str(queue_metrics.period_seconds),
                "CANARY_ENABLED": "true" if canary_enabled else "false",
            },
        ),
        size=size("metrics"),
        execution_role_arn=iam.execution_role_arns["metrics"],
        task_role_arn=iam.task_role_arns["metrics"],
        tags=tags,
    ),
)

# --- Observability ----------------------------------------------------------------------------
observability = Observability(
    prefix,
    ObservabilityArgs(
        metrics=queue_metrics,
        region=region,
        load_balancer_arn_suffix=api.load_balancer_arn_suffix,
        target_group_arn_suffix=api.target_group_arn_suffix,
        cache_node_ids=cache.node_ids,
        backlog_target=worker_scaling.backlog_target,
        thresholds=AlarmThresholds(
            oldest_pending_age_seconds=cfg.require_float("alarmOldestPendingAgeSeconds"),
            failure_rate_percent=cfg.require_float("alarmFailureRatePercent"),
            api_5xx_per_5_minutes=cfg.require_float("alarmApi5xxPer5Minutes"),
            redis_memory_percent=cfg.require_float("alarmRedisMemoryPercent"),
            canary_latency_seconds=cfg.require_float("alarmCanaryLatencySeconds"),
        ),
        canary_enabled=canary_enabled,
        alert_email=cfg.get("alertEmail") or None,
        tags=tags,
    ),
)

pulumi.export("apiUrl", api.url)
pulumi.export("dashboardUrl", observability.dashboard_url)
pulumi.export("repositoryUrls", registry.repository_urls)
pulumi.export("cacheEndpoint", cache.endpoint)
pulumi.export("cachePort", cache.port)
pulumi.export("artifactBucket", artifacts.bucket_name)
pulumi.export("alarmTopicArn", observability.alarm_topic_arn)
pulumi.export("clusterName", cluster.cluster_name)
pulumi.export("workerServiceName", workers.service_name)
pulumi.export("metricsServiceName", metrics_task.service_name)
