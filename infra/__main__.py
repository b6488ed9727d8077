"""The job queue on AWS: reads the stack config, wires the components, exports the endpoints.

Run with `pulumi up` from the repository root (Pulumi.yaml: `main: infra/`). Only `aws:region`
is required; every other key, its default and its meaning is in infra/config.py (and listed in
docs/cloud-deployment.md). The images are built and pushed by the program itself unless
`imageTag` names an already pushed build.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.components.access_logs import AccessLogs, AccessLogsArgs
from infra.components.alerts import Alerts, AlertsArgs
from infra.components.api_service import ApiService, ApiServiceArgs
from infra.components.app_secrets import AppSecrets, AppSecretsArgs
from infra.components.artifacts import Artifacts, ArtifactsArgs
from infra.components.cache import REDIS_PORT, Cache, CacheArgs
from infra.components.cluster import Cluster, ClusterArgs
from infra.components.containers import (
    ContainerSpec,
    HealthCheck,
    http_health_check,
    role_health_check,
)
from infra.components.fargate_service import FargateTask, TaskSize
from infra.components.firewall import Firewall, FirewallArgs
from infra.components.iam import (
    Iam,
    IamArgs,
    ServiceAccess,
    api_task_statements,
    metrics_task_statements,
    worker_task_statements,
)
from infra.components.images import Images, ImagesArgs
from infra.components.metrics import QueueMetrics
from infra.components.metrics_service import MetricsService, MetricsServiceArgs
from infra.components.network import Network, NetworkArgs
from infra.components.observability import AlarmThresholds, Observability, ObservabilityArgs
from infra.components.registry import Registry, RegistryArgs
from infra.components.workers import WorkerService, WorkerServiceArgs
from infra.config import (
    KEYS,
    WORKER_STOP_TIMEOUT_SECONDS,
    ConfigError,
    StackSettings,
    TaskSettings,
    read_stack_settings,
)
from service.metrics.contract import NAMESPACE

ROLES = ("api", "worker", "metrics")
API_PORT = 8000
ACCESS_LOG_RETENTION_DAYS = 90


def load_settings() -> StackSettings:
    """The stack's settings; a bad key stops the program with a message naming it."""
    config = pulumi.Config()
    values = {
        f"jobqueue:{key.name}": raw for key in KEYS if (raw := config.get(key.name)) is not None
    }
    try:
        return read_stack_settings(values, pulumi.get_stack(), pulumi.Config("aws").get("region"))
    except ConfigError as error:
        raise pulumi.RunError(str(error)) from None


s = load_settings()
account_id = aws.get_caller_identity().account_id
prefix = f"{pulumi.get_project()}-{pulumi.get_stack()}"
tags = {"Project": pulumi.get_project(), "Stack": pulumi.get_stack(), "ManagedBy": "pulumi"}
queue_metrics = QueueMetrics(queue=s.queue_name, environment=s.environment)

# Each block below fills one component's typed Args from the settings, keyword by keyword. They
# are alike in shape (a duplicate finder pairs them) and stay explicit on purpose: a reader sees
# which setting feeds which argument, and a renamed field fails here, not at `pulumi up`.

# --- Foundations ------------------------------------------------------------------------------
alerts = Alerts(
    prefix, AlertsArgs(account_id=account_id, alert_email=s.alarms.alert_email, tags=tags)
)
network = Network(
    prefix,
    NetworkArgs(
        cidr=s.network.cidr,
        az_count=s.network.az_count,
        nat_per_az=s.network.nat_per_az,
        region=s.region,
        flow_logs=s.network.flow_logs,
        flow_log_retention_days=s.network.flow_log_retention_days,
        tags=tags,
    ),
)
firewall = Firewall(
    prefix,
    FirewallArgs(
        vpc_id=network.vpc_id,
        vpc_cidr=network.vpc_cidr,
        api_port=API_PORT,
        cache_port=REDIS_PORT,
        https=s.edge.certificate_arn is not None,
        http_redirect=s.edge.http_redirect,
        internet_facing=s.edge.internet_facing,
        tags=tags,
    ),
)
cache = Cache(
    prefix,
    CacheArgs(
        subnet_ids=network.private_subnet_ids,
        security_group_id=firewall.cache_sg_id,
        notification_topic_arn=alerts.topic_arn,
        node_type=s.cache.node_type,
        engine_version=s.cache.engine_version,
        cluster_mode=s.cache.cluster_mode,
        shards=s.cache.shards,
        replicas_per_shard=s.cache.replicas,
        snapshot_retention_days=s.cache.snapshot_retention_days,
        tags=tags,
    ),
)
registry = Registry(prefix, RegistryArgs(roles=ROLES, keep_images=s.ecr_keep_images, tags=tags))
images = Images(
    prefix,
    ImagesArgs(
        repository_urls=registry.repository_urls,
        registry_id=registry.registry_id,
        cpu_architecture=s.cpu_architecture,
        image_tag=s.image_tag,
    ),
)
artifacts = Artifacts(prefix, ArtifactsArgs(retention_days=s.artifact_retention_days, tags=tags))
app_secrets = AppSecrets(prefix, AppSecretsArgs(tags=tags))
cluster = Cluster(
    prefix,
    ClusterArgs(
        roles=ROLES,
        log_retention_days=s.log_retention_days,
        container_insights=s.container_insights,
        tags=tags,
    ),
)

# --- IAM --------------------------------------------------------------------------------------
secret_arns = {
    "api": [cache.auth_secret_arn, app_secrets.api_keys_secret_arn],
    "worker": [cache.auth_secret_arn],
    "metrics": [cache.auth_secret_arn],
}
ses_identities = (
    f"arn:aws:ses:{s.region}:{account_id}:identity/*" if s.email.sender is not None else None
)
task_statements = {
    "api": api_task_statements(artifacts.bucket_arn),
    "worker": worker_task_statements(
        artifacts.bucket_arn,
        ses_identities,
        s.email.sender,
        pulumi.Output.concat(
            f"arn:aws:ecs:{s.region}:{account_id}:task/", cluster.cluster_name, "/*"
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
common_env: dict[str, pulumi.Input[str]] = {
    "ENVIRONMENT": s.environment,
    "REDIS_HOST": cache.endpoint,
    "REDIS_PORT": str(cache.port),
    "REDIS_TLS": "true",
    # In cluster mode REDIS_HOST is the configuration endpoint; the service finds the queue's slot.
    "REDIS_CLUSTER": "true" if s.cache.cluster_mode else "false",
    "QUEUE_NAME": s.queue_name,
    "KEY_PREFIX": s.key_prefix,
    "AWS_REGION": s.region,
}
if s.job_modules:
    # The API validates and the workers run these types; the metrics task gives each a series.
    common_env["JOB_MODULES"] = ",".join(s.job_modules)
app_env: dict[str, pulumi.Input[str]] = {
    **common_env,
    "ARTIFACT_BUCKET": artifacts.bucket_name,
    # SES always: with no sender configured the worker has no SES permission, so an email job
    # fails (and says so) while everything else deploys and runs.
    "EMAIL_BACKEND": "ses",
}
if s.email.sender is not None:
    app_env["EMAIL_FROM"] = s.email.sender


def fargate_task(
    role: str,
    size: TaskSettings,
    security_group_id: pulumi.Input[str],
    env: dict[str, pulumi.Input[str]],
    health_check: HealthCheck,
    *,
    port: int | None = None,
    stop_timeout: int | None = None,
) -> FargateTask:
    """One role's task: its container (image built here or the configured tag), size and
    roles, with its security group in the private subnets."""
    secrets: dict[str, pulumi.Input[str]] = {"REDIS_PASSWORD": cache.auth_secret_arn}
    if role == "api":
        secrets["API_KEYS"] = app_secrets.api_keys_secret_arn
    container = ContainerSpec(
        name=role,
        image=images.uris[role],
        region=s.region,
        log_group=cluster.log_group_names[role],
        environment=env,
        secrets=secrets,
        health_check=health_check,
        port=port,
        stop_timeout=stop_timeout,
    )
    return FargateTask(
        cluster_arn=cluster.cluster_arn,
        subnet_ids=network.private_subnet_ids,
        security_group_id=security_group_id,
        container=container,
        size=TaskSize(size.cpu, size.memory, s.cpu_architecture),
        execution_role_arn=iam.execution_role_arns[role],
        task_role_arn=iam.task_role_arns[role],
    )


# --- Services ---------------------------------------------------------------------------------
access_logs = (
    AccessLogs(
        f"{prefix}-alb-logs",
        AccessLogsArgs(
            region=s.region,
            account_id=account_id,
            retention_days=ACCESS_LOG_RETENTION_DAYS,
            tags=tags,
        ),
    )
    if s.edge.access_logs
    else None
)
api = ApiService(
    f"{prefix}-api",
    ApiServiceArgs(
        task=fargate_task(
            "api",
            s.api.size,
            firewall.api_sg_id,
            {**app_env, "HOST": "0.0.0.0", "PORT": str(API_PORT)},  # noqa: S104 - in-container
            http_health_check(API_PORT, "/healthz"),
            port=API_PORT,
        ),
        cluster_name=cluster.cluster_name,
        vpc_id=network.vpc_id,
        public_subnet_ids=network.public_subnet_ids,
        alb_sg_id=firewall.alb_sg_id,
        min_count=s.api.min_count,
        max_count=s.api.max_count,
        cpu_target_percent=s.api.cpu_target_percent,
        requests_per_target=s.api.requests_per_target,
        certificate_arn=s.edge.certificate_arn,
        internet_facing=s.edge.internet_facing,
        http_redirect=s.edge.http_redirect,
        alarm_topic_arn=alerts.topic_arn,
        api_5xx_per_5_minutes=s.alarms.api_5xx_per_5_minutes,
        access_logs=access_logs,
        tags=tags,
    ),
)
w = s.worker
workers = WorkerService(
    f"{prefix}-worker",
    WorkerServiceArgs(
        task=fargate_task(
            "worker",
            w.size,
            firewall.worker_sg_id,
            {
                **app_env,
                "WORKER_COUNT": str(w.count),
                "WORKER_CONCURRENCY": str(w.concurrency),
                "SHUTDOWN_GRACE_SECONDS": f"{w.shutdown_grace_seconds:g}",
                "LEASE_SECONDS": f"{w.lease_seconds:g}",
                "TASK_PROTECTION_MINUTES": str(w.protection_minutes),
            },
            role_health_check("worker"),
            stop_timeout=WORKER_STOP_TIMEOUT_SECONDS,
        ),
        cluster_name=cluster.cluster_name,
        scaling=w.scaling,
        metrics=queue_metrics,
        shutdown_grace_seconds=w.shutdown_grace_seconds,
        alarm_topic_arn=alerts.topic_arn,
        use_spot=w.use_spot,
        tags=tags,
    ),
)
metrics_task = MetricsService(
    f"{prefix}-metrics",
    MetricsServiceArgs(
        task=fargate_task(
            "metrics",
            s.metrics_size,
            firewall.metrics_sg_id,
            {
                **common_env,
                "CLOUDWATCH_ENABLED": "true",
                "METRICS_PERIOD_SECONDS": str(queue_metrics.period_seconds),
                "CANARY_ENABLED": "true" if s.canary_enabled else "false",
            },
            role_health_check("metrics"),
        ),
        tags=tags,
    ),
)

# --- Observability ----------------------------------------------------------------------------
observability = Observability(
    prefix,
    ObservabilityArgs(
        metrics=queue_metrics,
        region=s.region,
        load_balancer_arn_suffix=api.load_balancer_arn_suffix,
        target_group_arn_suffix=api.target_group_arn_suffix,
        cache_node_ids=cache.node_ids,
        backlog_target=w.scaling.target_backlog_per_task,
        thresholds=AlarmThresholds(
            oldest_pending_age_seconds=s.alarms.oldest_pending_age_seconds,
            failure_rate_percent=s.alarms.failure_rate_percent,
            redis_memory_percent=s.alarms.redis_memory_percent,
            canary_latency_seconds=s.alarms.canary_latency_seconds,
        ),
        canary_enabled=s.canary_enabled,
        alarm_topic_arn=alerts.topic_arn,
        service_arn_prefix=pulumi.Output.concat(
            f"arn:aws:ecs:{s.region}:{account_id}:service/", cluster.cluster_name, "/"
        ),
        tags=tags,
    ),
)

pulumi.export("apiUrl", api.url)
pulumi.export("apiInternal", api.internal)
pulumi.export("dashboardUrl", observability.dashboard_url)
pulumi.export("repositoryUrls", registry.repository_urls)
pulumi.export("imageUris", images.uris)
pulumi.export("cacheEndpoint", cache.endpoint)
pulumi.export("cachePort", cache.port)
pulumi.export("artifactBucket", artifacts.bucket_name)
pulumi.export("alarmTopicArn", alerts.topic_arn)
pulumi.export("clusterName", cluster.cluster_name)
pulumi.export("apiServiceName", api.service_name)
pulumi.export("workerServiceName", workers.service_name)
pulumi.export("metricsServiceName", metrics_task.service_name)
