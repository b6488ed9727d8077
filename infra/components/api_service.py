"""The HTTP API: Fargate tasks behind an Application Load Balancer.

The load balancer is on the internet only with TLS (a certificate: HTTPS with a TLS 1.2+ policy;
port 80 closed, or only redirecting with `httpRedirect`) or when `allowPublicPlainHttp` says so
by name; otherwise it is internal, reachable inside the VPC and from peered networks, so API keys
never cross the internet in cleartext by default. The service's deployments roll back on the
circuit breaker and on its two deployment alarms (5xx responses, no healthy target), which page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.access_logs import LOG_PREFIX, AccessLogs
from infra.components.alerts import paging_alarm
from infra.components.fargate_service import (
    DeploymentAlarm,
    FargateTask,
    Rollout,
    fargate_service,
    scalable_target,
    target_tracking_policy,
)
from infra.components.metrics import expression_query

ALB_NAMESPACE = "AWS/ApplicationELB"

# Modern TLS only (1.2 minimum, 1.3 preferred).
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


@dataclass
class ApiServiceArgs:
    """The API's task, its load balancer's placement and TLS, and its scaling."""

    # The API tasks; an internal load balancer shares their (private) subnets.
    task: FargateTask
    cluster_name: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    public_subnet_ids: list[pulumi.Output[str]]
    alb_sg_id: pulumi.Input[str]
    min_count: int
    max_count: int
    cpu_target_percent: float
    requests_per_target: int
    certificate_arn: str | None
    internet_facing: bool
    http_redirect: bool
    alarm_topic_arn: pulumi.Input[str]
    api_5xx_per_5_minutes: float
    # The bucket ALB access logs go to; None = no access logs.
    access_logs: AccessLogs | None = None
    # Short, because in-flight API requests are short; the default 300 s slows every deploy.
    deregistration_delay_seconds: int = 15
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.min_count <= self.max_count:
            raise ValueError("apiMinCount must be >= 1 and <= apiMaxCount")
        if self.task.container.port is None:
            raise ValueError("the API container needs a port")


class ApiService(pulumi.ComponentResource):
    """ALB (HTTPS when a certificate is given), target group on /readyz, service, autoscaling."""

    url: pulumi.Output[str]
    load_balancer_arn_suffix: pulumi.Output[str]
    target_group_arn_suffix: pulumi.Output[str]
    service_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: ApiServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Create the load balancer, its listeners and the service."""
        super().__init__("jobqueue:infra:ApiService", name, None, opts)
        self._name = name
        self._args = args
        self._child = pulumi.ResourceOptions(parent=self)
        lb = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            internal=not args.internet_facing,
            subnets=args.public_subnet_ids if args.internet_facing else args.task.subnet_ids,
            security_groups=[args.alb_sg_id],
            drop_invalid_header_fields=True,
            access_logs=(
                aws.lb.LoadBalancerAccessLogsArgs(
                    bucket=args.access_logs.bucket_name, prefix=LOG_PREFIX, enabled=True
                )
                if args.access_logs
                else None
            ),
            tags=args.tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                # ELB checks it may write to the bucket when logging is switched on.
                depends_on=[args.access_logs] if args.access_logs else None,
            ),
        )
        target_group = self._target_group()
        listener = self._listeners(lb, target_group)
        alarms = self._deployment_alarms(lb, target_group)
        service = self._service(target_group, listener, alarms)
        self._autoscaling(service, lb, target_group)
        scheme = "https" if args.certificate_arn else "http"
        self.internal = not args.internet_facing
        self.url = pulumi.Output.concat(scheme, "://", lb.dns_name)
        self.load_balancer_arn_suffix = lb.arn_suffix
        self.target_group_arn_suffix = target_group.arn_suffix
        self.service_name = service.name
        self.register_outputs({"url": self.url, "service_name": service.name})

    def _target_group(self) -> aws.lb.TargetGroup:
        return aws.lb.TargetGroup(
            f"{self._name}-tg",
            target_type="ip",
            vpc_id=self._args.vpc_id,
            port=self._args.task.container.port,
            protocol="HTTP",
            deregistration_delay=self._args.deregistration_delay_seconds,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                # Readiness, not liveness: a task that cannot reach Redis gets no traffic.
                path="/readyz",
                matcher="200",
                interval=10,
                timeout=5,
                healthy_threshold=2,
                unhealthy_threshold=3,
            ),
            tags=self._args.tags,
            opts=self._child,
        )

    def _listeners(
        self, lb: aws.lb.LoadBalancer, target_group: aws.lb.TargetGroup
    ) -> aws.lb.Listener:
        forward = aws.lb.ListenerDefaultActionArgs(
            type="forward", target_group_arn=target_group.arn
        )
        if not self._args.certificate_arn:
            return aws.lb.Listener(
                f"{self._name}-http",
                load_balancer_arn=lb.arn,
                port=80,
                protocol="HTTP",
                default_actions=[forward],
                opts=self._child,
            )
        https = aws.lb.Listener(
            f"{self._name}-https",
            load_balancer_arn=lb.arn,
            port=443,
            protocol="HTTPS",
            ssl_policy=TLS_POLICY,
            certificate_arn=self._args.certificate_arn,
            default_actions=[forward],
            opts=self._child,
        )
        if not self._args.http_redirect:
            return https
        aws.lb.Listener(
            f"{self._name}-http-redirect",
            load_balancer_arn=lb.arn,
            port=80,
            protocol="HTTP",
            default_actions=[
                aws.lb.ListenerDefaultActionArgs(
                    type="redirect",
                    redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                        protocol="HTTPS", port="443", status_code="HTTP_301"
                    ),
                )
            ],
            opts=self._child,
        )
        return https

    def _service(
        self,
        target_group: aws.lb.TargetGroup,
        listener: aws.lb.Listener,
        alarms: list[DeploymentAlarm],
    ) -> aws.ecs.Service:
        args = self._args
        container = args.task.container
        return fargate_service(
            self._name,
            args.task,
            # A deployment whose tasks start but serve errors (or nothing) rolls back too.
            Rollout(
                desired_count=args.min_count,
                minimum_healthy_percent=100,
                maximum_percent=200,
                alarms=alarms,
                autoscaled=True,
            ),
            parent=self,
            tags=args.tags,
            load_balancer=aws.ecs.ServiceLoadBalancerArgs(
                target_group_arn=target_group.arn,
                container_name=container.name,
                container_port=container.port or 0,
            ),
            health_check_grace_period_seconds=30,
            depends_on=[listener],
        )

    def _deployment_alarms(
        self, lb: aws.lb.LoadBalancer, tg: aws.lb.TargetGroup
    ) -> list[DeploymentAlarm]:
        """5xx responses and no healthy target: they page, and roll a deployment back."""
        args = self._args
        errors = self._paging_alarm(
            "5xx",
            f"More than {args.api_5xx_per_5_minutes:g} API 5xx responses in 5 minutes",
            comparison_operator="GreaterThanThreshold",
            threshold=args.api_5xx_per_5_minutes,
            evaluation_periods=1,
            treat_missing_data="notBreaching",
            metric_queries=[
                _alb_query("target", "HTTPCode_Target_5XX_Count", {"LoadBalancer": lb.arn_suffix}),
                _alb_query("elb", "HTTPCode_ELB_5XX_Count", {"LoadBalancer": lb.arn_suffix}),
                expression_query("errors", "FILL(target, 0) + FILL(elb, 0)", "API 5xx"),
            ],
        )
        no_targets = self._paging_alarm(
            "no-healthy-targets",
            "The API has no healthy target: every request fails",
            namespace=ALB_NAMESPACE,
            metric_name="HealthyHostCount",
            dimensions={"LoadBalancer": lb.arn_suffix, "TargetGroup": tg.arn_suffix},
            statistic="Minimum",
            period=60,
            evaluation_periods=2,
            threshold=1,
            comparison_operator="LessThanThreshold",
            # The ALB publishes HealthyHostCount every minute while it exists: no data is no
            # target at all.
            treat_missing_data="breaching",
        )
        return [errors, no_targets]

    def _paging_alarm(self, suffix: str, description: str, **metric: Any) -> DeploymentAlarm:
        """An alarm notifying the on-call topic; its name is fixed so ECS can watch it."""
        name = f"{self._name}-{suffix}"
        topic, tags = self._args.alarm_topic_arn, self._args.tags
        alarm = paging_alarm(name, description, topic, parent=self, tags=tags, name=name, **metric)
        return DeploymentAlarm(name, alarm)

    def _autoscaling(
        self, service: aws.ecs.Service, lb: aws.lb.LoadBalancer, tg: aws.lb.TargetGroup
    ) -> None:
        args = self._args
        target = scalable_target(
            self._name, args.cluster_name, service, (args.min_count, args.max_count), self
        )
        cpu = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
            target_value=args.cpu_target_percent,
            predefined_metric_specification=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
                predefined_metric_type="ECSServiceAverageCPUUtilization"
            ),
            scale_in_cooldown=300,
            scale_out_cooldown=60,
        )
        requests = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
            target_value=args.requests_per_target,
            predefined_metric_specification=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
                predefined_metric_type="ALBRequestCountPerTarget",
                resource_label=pulumi.Output.concat(lb.arn_suffix, "/", tg.arn_suffix),
            ),
            scale_in_cooldown=300,
            scale_out_cooldown=60,
        )
        for kind, config in (("cpu", cpu), ("requests", requests)):
            target_tracking_policy(f"{self._name}-{kind}", target, config, self)


def _alb_query(
    query_id: str, metric_name: str, dimensions: dict[str, pulumi.Input[str]]
) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
    return aws.cloudwatch.MetricAlarmMetricQueryArgs(
        id=query_id,
        return_data=False,
        metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
            namespace=ALB_NAMESPACE,
            metric_name=metric_name,
            dimensions=dimensions,
            period=300,
            stat="Sum",
        ),
    )
