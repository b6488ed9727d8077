"""The workers: a Fargate service scaled on queue backlog (AWS's "backlog per task" pattern).

Target tracking keeps BacklogPerWorker near `acceptable wait / average job time x concurrency`
(how many pending jobs one worker process can clear within the acceptable wait). Target tracking
cannot leave zero tasks (its formula multiplies the current count), so a step policy adds a task
when jobs are pending while no worker is alive. Scale-in never kills a busy task: workers hold
ECS task scale-in protection while they run jobs (service/ecs_protection.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
from pulumi_aws import appautoscaling

from infra.components.containers import ContainerSpec, TaskSize, fargate_task_definition
from infra.components.metrics import QueueMetrics
from service.metrics.contract import BACKLOG_PER_WORKER, LIVE_WORKERS, QUEUE_DEPTH
from service.settings import FARGATE_MAX_STOP_TIMEOUT_SECONDS

MetricQuery = appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricArgsDict  # noqa: E501

# Fargate sends SIGKILL at most 120 s after SIGTERM (one constant, shared with the worker).
FARGATE_MAX_STOP_TIMEOUT = FARGATE_MAX_STOP_TIMEOUT_SECONDS
# Time the worker needs after its grace to hand unfinished jobs back and exit: taskiq's broker
# shutdown (service.worker.BROKER_SHUTDOWN_SECONDS, 10 s) plus process exit.
HANDBACK_MARGIN_SECONDS = 15


@dataclass
class WorkerScaling:
    """Autoscaling bounds and target."""

    min_count: int
    max_count: int
    acceptable_wait_seconds: float
    average_job_seconds: float
    concurrency: int
    # The metrics task's canary enqueues a job every period, which needs a worker to run it.
    canary_enabled: bool = False
    scale_in_cooldown: int = 300
    scale_out_cooldown: int = 60

    def __post_init__(self) -> None:
        if not 0 <= self.min_count <= self.max_count or self.max_count < 1:
            raise ValueError("workerMinCount must be >= 0 and <= workerMaxCount (>= 1)")
        if self.acceptable_wait_seconds <= 0 or self.average_job_seconds <= 0:
            raise ValueError("acceptableWaitSeconds and averageJobSeconds must be positive")
        if self.canary_enabled and self.min_count == 0:
            # With no standing worker each canary waits for a cold start (1-2 min): the fleet
            # never rests at zero anyway, and every cold start pages the canary-latency alarm.
            raise ValueError(
                "canaryEnabled needs workerMinCount >= 1: the canary is a job every minute, so "
                "scaling to zero only makes each canary wait for a task to start (and page)"
            )

    @property
    def backlog_target(self) -> float:
        """Pending jobs per worker process that it clears within the acceptable wait."""
        per_process = self.acceptable_wait_seconds / self.average_job_seconds * self.concurrency
        return round(max(per_process, 1.0), 2)


@dataclass
class WorkerServiceArgs:
    """Placement, size, shutdown timing and scaling of the workers."""

    cluster_arn: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    private_subnet_ids: list[pulumi.Output[str]]
    security_group_id: pulumi.Input[str]
    container: ContainerSpec
    size: TaskSize
    execution_role_arn: pulumi.Input[str]
    task_role_arn: pulumi.Input[str]
    scaling: WorkerScaling
    metrics: QueueMetrics
    shutdown_grace_seconds: float
    use_spot: bool = False
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        stop = self.container.stop_timeout
        if stop is None or not 0 < stop <= FARGATE_MAX_STOP_TIMEOUT:
            raise ValueError(f"worker stopTimeout must be 1..{FARGATE_MAX_STOP_TIMEOUT} seconds")
        if self.shutdown_grace_seconds > stop - HANDBACK_MARGIN_SECONDS:
            raise ValueError(
                f"shutdownGraceSeconds={self.shutdown_grace_seconds:g} must be <= stopTimeout "
                f"({stop}) - {HANDBACK_MARGIN_SECONDS} = {stop - HANDBACK_MARGIN_SECONDS}: "
                "ECS kills the task at stopTimeout, before unfinished jobs are handed back"
            )


class WorkerService(pulumi.ComponentResource):
    """The worker service, its scalable target and both scaling policies."""

    service_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: WorkerServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Create the task definition, the service and its autoscaling."""
        super().__init__("jobqueue:infra:WorkerService", name, None, opts)
        self._name = name
        self._args = args
        self._child = pulumi.ResourceOptions(parent=self)
        service = self._service()
        target = aws.appautoscaling.Target(
            f"{name}-scaling",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", args.cluster_name, "/", service.name),
            min_capacity=args.scaling.min_count,
            max_capacity=args.scaling.max_count,
            opts=self._child,
        )
        self._backlog_policy(target)
        self._scale_from_zero(target)
        self.service_name = service.name
        self.register_outputs({"service_name": service.name})

    def _service(self) -> aws.ecs.Service:
        args = self._args
        task = fargate_task_definition(
            f"{self._name}-task",
            spec=args.container,
            size=args.size,
            execution_role_arn=args.execution_role_arn,
            task_role_arn=args.task_role_arn,
            parent=self,
        )
        provider = "FARGATE_SPOT" if args.use_spot else "FARGATE"
        return aws.ecs.Service(
            f"{self._name}-service",
            cluster=args.cluster_arn,
            task_definition=task.arn,
            # Spot's 2-minute notice arrives as SIGTERM: the same graceful hand-back path.
            capacity_provider_strategies=[
                aws.ecs.ServiceCapacityProviderStrategyArgs(capacity_provider=provider, weight=1)
            ],
            desired_count=args.scaling.min_count,
            # Workers are interchangeable and hand jobs back on SIGTERM, so a deploy may stop
            # old tasks before new ones are up; protected (busy) tasks are left to finish.
            deployment_minimum_healthy_percent=50,
            deployment_maximum_percent=200,
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(
                enable=True, rollback=True
            ),
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=args.private_subnet_ids,
                security_groups=[args.security_group_id],
                assign_public_ip=False,
            ),
            propagate_tags="SERVICE",
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["desired_count"]),
        )

    def _backlog_policy(self, target: aws.appautoscaling.Target) -> None:
        args = self._args
        dims = args.metrics.dimensions(BACKLOG_PER_WORKER)
        # One metric query (no math): the metrics task already divides depth by live workers,
        # so the dashboard and the policy read the same published series.
        backlog: MetricQuery = {
            "id": "backlog",
            "label": "Pending jobs per live worker process",
            "return_data": True,
            "metric_stat": {
                "stat": "Average",
                "metric": {
                    "namespace": args.metrics.namespace,
                    "metric_name": BACKLOG_PER_WORKER.name,
                    "dimensions": [{"name": k, "value": v} for k, v in dims.items()],
                },
            },
        }
        aws.appautoscaling.Policy(
            f"{self._name}-backlog",
            policy_type="TargetTrackingScaling",
            service_namespace=target.service_namespace,
            scalable_dimension=target.scalable_dimension,
            resource_id=target.resource_id,
            target_tracking_scaling_policy_configuration={
                "target_value": args.scaling.backlog_target,
                "customized_metric_specification": {"metrics": [backlog]},
                "scale_in_cooldown": args.scaling.scale_in_cooldown,
                "scale_out_cooldown": args.scaling.scale_out_cooldown,
            },
            opts=self._child,
        )

    def _scale_from_zero(self, target: aws.appautoscaling.Target) -> None:
        step = aws.appautoscaling.Policy(
            f"{self._name}-from-zero",
            policy_type="StepScaling",
            service_namespace=target.service_namespace,
            scalable_dimension=target.scalable_dimension,
            resource_id=target.resource_id,
            step_scaling_policy_configuration={
                "adjustment_type": "ChangeInCapacity",
                "metric_aggregation_type": "Maximum",
                # Long enough for a task to start and its workers to heartbeat, so one pending
                # job does not add a task per minute while the first one boots.
                "cooldown": 180,
                "step_adjustments": [{"metric_interval_lower_bound": "0", "scaling_adjustment": 1}],
            },
            opts=self._child,
        )
        m = self._args.metrics
        aws.cloudwatch.MetricAlarm(
            f"{self._name}-depth-without-workers",
            alarm_description="Jobs pending and no worker alive: start one (scale from zero)",
            comparison_operator="GreaterThanThreshold",
            threshold=0,
            evaluation_periods=1,
            treat_missing_data="notBreaching",
            metric_queries=[
                m.alarm_query("depth", QUEUE_DEPTH),
                m.alarm_query("workers", LIVE_WORKERS),
                aws.cloudwatch.MetricAlarmMetricQueryArgs(
                    id="needs_worker",
                    expression="IF(depth > 0 AND workers == 0, 1, 0)",
                    label="Pending jobs with no live worker",
                    return_data=True,
                ),
            ],
            alarm_actions=[step.arn],
            tags=self._args.tags,
            opts=self._child,
        )
