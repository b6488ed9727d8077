"""The workers: a Fargate service scaled on queue backlog (AWS's "backlog per task" pattern).

Target tracking keeps BacklogPerTask (pending due jobs plus leased jobs, per live worker task)
near `acceptable wait x measured jobs per second per task` (infra/scaling.py, which the
simulator replays). Target tracking cannot leave zero tasks (its formula multiplies the current
count), so a step policy adds a task when jobs are pending while no worker is alive.

Scale-in never kills a busy task: workers hold ECS task scale-in protection while they hold jobs
(service/ecs_protection.py), bounded by TASK_PROTECTION_MINUTES so a hung worker cannot pin its
task. Protection also holds rolling deployments: ECS does not stop a protected task, so the old
revision's busy tasks finish their jobs (at most the bound) while the new ones start beside them
(maximum 200%); minimum healthy 100% keeps the fleet's capacity through the deploy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
from pulumi_aws import appautoscaling

from infra.components.alerts import paging_alarm
from infra.components.fargate_service import (
    DeploymentAlarm,
    FargateTask,
    Rollout,
    fargate_service,
    scalable_target,
    target_tracking_policy,
)
from infra.components.metrics import QueueMetrics, expression_query
from infra.scaling import FROM_ZERO_COOLDOWN_SECONDS, ScalingPlan
from service.metrics.contract import BACKLOG_PER_TASK, LIVE_WORKERS, QUEUE_DEPTH, STALLED_WORKERS
from service.settings import FARGATE_MAX_STOP_TIMEOUT_SECONDS, HANDBACK_MARGIN_SECONDS

MetricQuery = appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricArgsDict  # noqa: E501

# A stalled worker (room, due jobs, none taken) for this many minutes pages and rolls back a
# deployment: the one failure a running, heartbeating worker can have that the health check and
# the circuit breaker cannot see.
STALLED_MINUTES = 3


@dataclass
class WorkerServiceArgs:
    """The workers' task, shutdown timing and scaling."""

    task: FargateTask
    cluster_name: pulumi.Input[str]
    scaling: ScalingPlan
    metrics: QueueMetrics
    shutdown_grace_seconds: float
    alarm_topic_arn: pulumi.Input[str]
    use_spot: bool = False
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        stop = self.task.container.stop_timeout
        # Fargate sends SIGKILL at most this long after SIGTERM; the worker needs the margin
        # (service.settings) after its grace to hand unfinished jobs back and exit.
        if stop is None or not 0 < stop <= FARGATE_MAX_STOP_TIMEOUT_SECONDS:
            raise ValueError(
                f"worker stopTimeout must be 1..{FARGATE_MAX_STOP_TIMEOUT_SECONDS} seconds"
            )
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
        stalled = self._stalled_alarm()
        service = fargate_service(
            name,
            args.task,
            # 100/200: new tasks start beside the old ones, which stop once idle (protected busy
            # tasks are left to finish, up to the protection bound), so a deploy never lowers
            # the fleet's capacity while a backlog waits.
            Rollout(
                desired_count=args.scaling.min_tasks,
                minimum_healthy_percent=100,
                maximum_percent=200,
                alarms=[stalled],
                autoscaled=True,
            ),
            parent=self,
            tags=args.tags,
            # Spot's 2-minute notice arrives as SIGTERM: the same graceful hand-back path.
            capacity_provider="FARGATE_SPOT" if args.use_spot else "FARGATE",
        )
        plan = args.scaling
        target = scalable_target(
            name, args.cluster_name, service, (plan.min_tasks, plan.max_tasks), self
        )
        self._backlog_policy(target)
        self._scale_from_zero(target)
        self.service_name = service.name
        self.register_outputs({"service_name": service.name})

    def _backlog_policy(self, target: aws.appautoscaling.Target) -> None:
        args = self._args
        dims = args.metrics.dimensions(BACKLOG_PER_TASK)
        # One metric query (no math): the metrics task already divides the backlog by the live
        # tasks (service.metrics.collector), so the dashboard, the simulator and the policy read
        # the same number.
        backlog: MetricQuery = {
            "id": "backlog",
            "label": "Backlog (pending due + leased) per live worker task",
            "return_data": True,
            "metric_stat": {
                "stat": "Average",
                "metric": {
                    "namespace": args.metrics.namespace,
                    "metric_name": BACKLOG_PER_TASK.name,
                    "dimensions": [{"name": k, "value": v} for k, v in dims.items()],
                },
            },
        }
        target_tracking_policy(
            f"{self._name}-backlog",
            target,
            {
                "target_value": args.scaling.target_backlog_per_task,
                "customized_metric_specification": {"metrics": [backlog]},
                "scale_in_cooldown": args.scaling.scale_in_cooldown_seconds,
                "scale_out_cooldown": args.scaling.scale_out_cooldown_seconds,
            },
            self,
        )

    def _stalled_alarm(self) -> DeploymentAlarm:
        args = self._args
        name = f"{self._name}-stalled"
        alarm = paging_alarm(
            name,
            f"A worker process took no job for {STALLED_MINUTES} minutes while it had room "
            "and due jobs were pending",
            args.alarm_topic_arn,
            parent=self,
            tags=args.tags,
            name=name,
            **args.metrics.alarm_metric(STALLED_WORKERS, "Maximum"),
            evaluation_periods=STALLED_MINUTES,
            threshold=0,
            comparison_operator="GreaterThanThreshold",
            # Silence of the metrics task has its own alarm; here it proves nothing.
            treat_missing_data="notBreaching",
        )
        return DeploymentAlarm(name, alarm)

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
                "cooldown": FROM_ZERO_COOLDOWN_SECONDS,
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
                expression_query(
                    "needs_worker",
                    "IF(depth > 0 AND workers == 0, 1, 0)",
                    "Pending jobs with no live worker",
                ),
            ],
            alarm_actions=[step.arn],
            tags=self._args.tags,
            opts=self._child,
        )
