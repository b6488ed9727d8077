"""The on-call view: a CloudWatch dashboard and the alarms that are not a service's own.

The services own their deployment alarms (API 5xx and no healthy target, stalled workers), so
ECS can roll back on them; everything pages through the Alerts topic. Missing data is judged by
one alarm, `metrics-silent`, which waits longer than a metrics-task deploy takes (it stops the
old publisher before starting the new one: 2-3 silent minutes); the other alarms on published
metrics keep their state through a gap instead of paging on every deploy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.alerts import paging_alarm
from infra.components.metrics import QueueMetrics, expression_query
from service.metrics.contract import (
    ACTIVE_JOBS,
    BACKLOG_PER_TASK,
    CANARY_LATENCY,
    JOB_RUN_P50,
    JOB_RUN_P99,
    JOB_WAIT_P50,
    JOB_WAIT_P99,
    JOBS_COMPLETED,
    JOBS_FAILED,
    LIVE_WORKERS,
    OLDEST_PENDING_AGE,
    PRIORITY_DIMENSION_VALUES,
    QUEUE_BACKLOG,
    QUEUE_DEPTH,
    QUEUE_DEPTH_BY_PRIORITY,
    STALLED_WORKERS,
    MetricSpec,
)

ALB_NAMESPACE = "AWS/ApplicationELB"
CACHE_NAMESPACE = "AWS/ElastiCache"
WIDGET_WIDTH = 12
WIDGET_HEIGHT = 6


@dataclass
class AlarmThresholds:
    """When to page."""

    oldest_pending_age_seconds: float
    failure_rate_percent: float
    redis_memory_percent: float
    canary_latency_seconds: float
    no_workers_minutes: int = 10
    # Longer than a metrics-task deploy's gap, short enough that a dead publisher is noticed
    # before the scaling policy has flown blind for long.
    metrics_silent_minutes: int = 10


@dataclass
class ObservabilityArgs:
    """What to watch and whom to tell."""

    metrics: QueueMetrics
    region: str
    load_balancer_arn_suffix: pulumi.Input[str]
    target_group_arn_suffix: pulumi.Input[str]
    cache_node_ids: list[pulumi.Output[str]]
    backlog_target: float
    thresholds: AlarmThresholds
    canary_enabled: bool
    alarm_topic_arn: pulumi.Input[str]
    # arn:aws:ecs:<region>:<account>:service/<cluster>/ : the events name the service.
    service_arn_prefix: pulumi.Input[str]
    tags: dict[str, str] = field(default_factory=dict)


class Observability(pulumi.ComponentResource):
    """Dashboard, alarms, and the failed-deployment event rule."""

    dashboard_url: pulumi.Output[str]

    def __init__(
        self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Create the topic, the dashboard and the alarms."""
        super().__init__("jobqueue:infra:Observability", name, None, opts)
        self._name = name
        self._args = args
        self._child = pulumi.ResourceOptions(parent=self)
        dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=name,
            dashboard_body=pulumi.Output.json_dumps({"widgets": self._widgets()}),
            opts=self._child,
        )
        self._queue_alarms()
        self._canary_alarm()
        self._platform_alarms()
        self._deployment_events()
        self.dashboard_url = pulumi.Output.concat(
            f"https://{args.region}.console.aws.amazon.com/cloudwatch/home?region={args.region}"
            "#dashboards/dashboard/",
            dashboard.dashboard_name,
        )
        self.register_outputs({"dashboard_url": self.dashboard_url})

    # --- dashboard -------------------------------------------------------------------------

    def _widgets(self) -> list[dict[str, Any]]:
        m = self._args.metrics
        lb = self._args.load_balancer_arn_suffix
        nodes = self._args.cache_node_ids
        panels: list[tuple[str, list[list[Any]], str, dict[str, Any]]] = [
            (
                "Queue depth by priority",
                [m.widget_metric(QUEUE_DEPTH)]
                + [m.widget_metric(QUEUE_DEPTH_BY_PRIORITY, p) for p in PRIORITY_DIMENSION_VALUES],
                "Maximum",
                {},
            ),
            (
                "Backlog per worker task (scaling metric)",
                [m.widget_metric(BACKLOG_PER_TASK)],
                "Average",
                {
                    "annotations": {
                        "horizontal": [{"label": "target", "value": self._args.backlog_target}]
                    }
                },
            ),
            ("Oldest pending job age (s)", [m.widget_metric(OLDEST_PENDING_AGE)], "Maximum", {}),
            (
                "Job wait and run time (ms, p50 / p99)",
                [
                    m.widget_metric(JOB_WAIT_P50),
                    m.widget_metric(JOB_WAIT_P99),
                    m.widget_metric(JOB_RUN_P50),
                    m.widget_metric(JOB_RUN_P99),
                ],
                "Maximum",
                {},
            ),
            (
                "Jobs completed and failed",
                [m.widget_metric(JOBS_COMPLETED), m.widget_metric(JOBS_FAILED)],
                "Sum",
                {},
            ),
            (
                "Live and stalled workers, active jobs, backlog",
                [
                    m.widget_metric(LIVE_WORKERS),
                    m.widget_metric(STALLED_WORKERS),
                    m.widget_metric(ACTIVE_JOBS),
                    m.widget_metric(QUEUE_BACKLOG),
                ],
                "Maximum",
                {},
            ),
            (
                "API 5xx",
                [
                    [ALB_NAMESPACE, "HTTPCode_Target_5XX_Count", "LoadBalancer", lb],
                    [ALB_NAMESPACE, "HTTPCode_ELB_5XX_Count", "LoadBalancer", lb],
                ],
                "Sum",
                {},
            ),
            (
                "API latency (s)",
                [
                    [ALB_NAMESPACE, "TargetResponseTime", "LoadBalancer", lb, {"stat": "p50"}],
                    [ALB_NAMESPACE, "TargetResponseTime", "LoadBalancer", lb, {"stat": "p99"}],
                ],
                "p99",
                {},
            ),
            (
                "Redis engine CPU %",
                [[CACHE_NAMESPACE, "EngineCPUUtilization", "CacheClusterId", n] for n in nodes],
                "Maximum",
                {},
            ),
            (
                "Redis memory used %",
                [
                    [CACHE_NAMESPACE, "DatabaseMemoryUsagePercentage", "CacheClusterId", n]
                    for n in nodes
                ],
                "Maximum",
                {},
            ),
        ]
        if self._args.canary_enabled:
            panels.append(
                ("Canary end-to-end latency (s)", [m.widget_metric(CANARY_LATENCY)], "Maximum", {})
            )
        return [self._widget(i, *panel) for i, panel in enumerate(panels)]

    def _widget(
        self, index: int, title: str, metrics: list[list[Any]], stat: str, extra: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "type": "metric",
            "x": (index % 2) * WIDGET_WIDTH,
            "y": (index // 2) * WIDGET_HEIGHT,
            "width": WIDGET_WIDTH,
            "height": WIDGET_HEIGHT,
            "properties": {
                "title": title,
                "view": "timeSeries",
                "stacked": False,
                "region": self._args.region,
                "period": self._args.metrics.period_seconds,
                "stat": stat,
                "metrics": metrics,
                **extra,
            },
        }

    # --- alarms ----------------------------------------------------------------------------

    def _alarm(self, suffix: str, description: str, **metric: Any) -> None:
        args = self._args
        paging_alarm(
            f"{self._name}-{suffix}",
            description,
            args.alarm_topic_arn,
            parent=self,
            tags=args.tags,
            **metric,
        )

    def _queue_alarms(self) -> None:
        m, t = self._args.metrics, self._args.thresholds
        self._high_for_3_of_5_minutes(
            "oldest-pending-age",
            f"A job has waited more than {t.oldest_pending_age_seconds:g} s to start",
            OLDEST_PENDING_AGE,
            t.oldest_pending_age_seconds,
        )
        self._alarm(
            "metrics-silent",
            f"The metrics task published nothing for {t.metrics_silent_minutes} minutes: "
            "worker scaling and every queue alarm are blind",
            **m.alarm_metric(QUEUE_DEPTH, "SampleCount"),
            evaluation_periods=t.metrics_silent_minutes,
            threshold=1,
            comparison_operator="LessThanThreshold",
            treat_missing_data="breaching",
        )
        self._alarm(
            "failure-rate",
            f"More than {t.failure_rate_percent:g}% of finished jobs failed over 15 minutes",
            comparison_operator="GreaterThanThreshold",
            threshold=t.failure_rate_percent,
            evaluation_periods=3,
            treat_missing_data="notBreaching",
            metric_queries=[
                m.alarm_query("completed", JOBS_COMPLETED, stat="Sum", period=300),
                m.alarm_query("failed", JOBS_FAILED, stat="Sum", period=300),
                expression_query(
                    "rate",
                    "IF((completed + failed) > 0, 100 * failed / (completed + failed), 0)",
                    "Failure rate %",
                ),
            ],
        )
        self._alarm(
            "no-workers",
            f"Jobs pending for {t.no_workers_minutes} minutes with no live worker",
            comparison_operator="GreaterThanThreshold",
            threshold=0,
            evaluation_periods=t.no_workers_minutes,
            treat_missing_data="notBreaching",
            metric_queries=[
                m.alarm_query("depth", QUEUE_DEPTH),
                m.alarm_query("workers", LIVE_WORKERS),
                expression_query(
                    "stuck", "IF(depth > 0 AND workers == 0, 1, 0)", "Pending with no worker"
                ),
            ],
        )

    def _canary_alarm(self) -> None:
        t = self._args.thresholds
        if not self._args.canary_enabled:
            return
        # A stuck canary raises the metric (the oldest waiting canary's age), it does not
        # silence it, so missing data is left to metrics-silent here too.
        self._high_for_3_of_5_minutes(
            "canary-latency",
            f"The canary job took more than {t.canary_latency_seconds:g} s end to end",
            CANARY_LATENCY,
            t.canary_latency_seconds,
        )

    def _high_for_3_of_5_minutes(
        self, suffix: str, description: str, spec: MetricSpec, threshold: float
    ) -> None:
        """`spec` above `threshold` in 3 of 5 minutes: a job or canary that waited through one
        deploy does not page. Silence is metrics-silent's to judge: a deploy's gap keeps the
        state instead of paging."""
        self._alarm(
            suffix,
            description,
            **self._args.metrics.alarm_metric(spec, "Maximum"),
            evaluation_periods=5,
            datapoints_to_alarm=3,
            threshold=threshold,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="missing",
        )

    def _platform_alarms(self) -> None:
        args, t = self._args, self._args.thresholds
        for i, node in enumerate(args.cache_node_ids):
            self._alarm(
                f"redis-memory-{i + 1}",
                f"Valkey node memory above {t.redis_memory_percent:g}%: at 100% it refuses "
                "writes (noeviction) and enqueues fail with 503",
                **_node_metric(node, "DatabaseMemoryUsagePercentage", "Maximum"),
                evaluation_periods=2,
                threshold=t.redis_memory_percent,
                comparison_operator="GreaterThanThreshold",
                treat_missing_data="missing",
            )
            self._alarm(
                f"redis-evictions-{i + 1}",
                "Valkey evicted keys: queue data is being lost (maxmemory-policy is not "
                "noeviction on this node)",
                **_node_metric(node, "Evictions", "Sum"),
                evaluation_periods=1,
                threshold=0,
                comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching",
            )

    def _deployment_events(self) -> None:
        """A deployment the circuit breaker or a deployment alarm rolled back pages too."""
        rule = aws.cloudwatch.EventRule(
            f"{self._name}-deployment-failed",
            description="ECS deployments of this stack's services that failed",
            event_pattern=pulumi.Output.json_dumps(
                {
                    "source": ["aws.ecs"],
                    "detail-type": ["ECS Deployment State Change"],
                    "resources": [{"prefix": self._args.service_arn_prefix}],
                    "detail": {"eventName": ["SERVICE_DEPLOYMENT_FAILED"]},
                }
            ),
            tags=self._args.tags,
            opts=self._child,
        )
        aws.cloudwatch.EventTarget(
            f"{self._name}-deployment-failed",
            rule=rule.name,
            arn=self._args.alarm_topic_arn,
            opts=self._child,
        )


def _node_metric(node: pulumi.Input[str], metric_name: str, statistic: str) -> dict[str, Any]:
    """A single-metric alarm's metric arguments: one cache node's metric over 5 minutes."""
    return {
        "namespace": CACHE_NAMESPACE,
        "metric_name": metric_name,
        "dimensions": {"CacheClusterId": node},
        "statistic": statistic,
        "period": 300,
    }
