"""The HTTP API: Fargate tasks behind a public Application Load Balancer."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.components.containers import ContainerSpec, TaskSize, fargate_task_definition

# Modern TLS only (1.2 minimum, 1.3 preferred).
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


@dataclass
class ApiServiceArgs:
    """Placement, size, TLS and scaling of the API."""

    cluster_arn: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]
    alb_sg_id: pulumi.Input[str]
    api_sg_id: pulumi.Input[str]
    container: ContainerSpec
    size: TaskSize
    execution_role_arn: pulumi.Input[str]
    task_role_arn: pulumi.Input[str]
    min_count: int
    max_count: int
    cpu_target_percent: float
    requests_per_target: int
    certificate_arn: str | None
    # Short, because in-flight API requests are short; the default 300 s slows every deploy.
    deregistration_delay_seconds: int = 15
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.min_count <= self.max_count:
            raise ValueError("apiMinCount must be >= 1 and <= apiMaxCount")
        if self.container.port is None:
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
            internal=False,
            subnets=args.public_subnet_ids,
            security_groups=[args.alb_sg_id],
            drop_invalid_header_fields=True,
            tags=args.tags,
            opts=self._child,
        )
        target_group = self._target_group()
        listener = self._listeners(lb, target_group)
        service = self._service(target_group, listener)
        self._autoscaling(service, lb, target_group)
        scheme = "https" if args.certificate_arn else "http"
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
            port=self._args.container.port,
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
        self, target_group: aws.lb.TargetGroup, listener: aws.lb.Listener
    ) -> aws.ecs.Service:
        args = self._args
        task = fargate_task_definition(
            f"{self._name}-task",
            spec=args.container,
            size=args.size,
            execution_role_arn=args.execution_role_arn,
            task_role_arn=args.task_role_arn,
            parent=self,
        )
        return aws.ecs.Service(
            f"{self._name}-service",
            cluster=args.cluster_arn,
            task_definition=task.arn,
            launch_type="FARGATE",
            desired_count=args.min_count,
            deployment_minimum_healthy_percent=100,
            deployment_maximum_percent=200,
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(
                enable=True, rollback=True
            ),
            health_check_grace_period_seconds=30,
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=args.private_subnet_ids,
                security_groups=[args.api_sg_id],
                assign_public_ip=False,
            ),
            load_balancers=[
                aws.ecs.ServiceLoadBalancerArgs(
                    target_group_arn=target_group.arn,
                    container_name=args.container.name,
                    container_port=args.container.port or 0,
                )
            ],
            propagate_tags="SERVICE",
            tags=args.tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[listener],
                # Autoscaling owns the count after creation; `pulumi up` must not reset it.
                ignore_changes=["desired_count"],
            ),
        )

    def _autoscaling(
        self, service: aws.ecs.Service, lb: aws.lb.LoadBalancer, tg: aws.lb.TargetGroup
    ) -> None:
        args = self._args
        target = aws.appautoscaling.Target(
            f"{self._name}-scaling",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", args.cluster_name, "/", service.name),
            min_capacity=args.min_count,
            max_capacity=args.max_count,
            opts=self._child,
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
            aws.appautoscaling.Policy(
                f"{self._name}-{kind}",
                policy_type="TargetTrackingScaling",
                service_namespace=target.service_namespace,
                scalable_dimension=target.scalable_dimension,
                resource_id=target.resource_id,
                target_tracking_scaling_policy_configuration=config,
                opts=self._child,
            )
