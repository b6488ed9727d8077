"""The metrics task: one always-on Fargate task running `jobqueue metrics`.

Why a one-task service and not an EventBridge Scheduler rule: the contract publishes every 60 s,
zeros included, because alarms and target tracking go to INSUFFICIENT_DATA on gaps. The Scheduler's
finest rate is one minute and every run would be a new Fargate task (30-60 s to pull and start,
billed a minute minimum), so runs would overlap or leave gaps, and the canary would lose its
continuity. One long-running task publishes on time for about the price of the scheduled runs,
and ECS restarts it if it dies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.components.containers import ContainerSpec, TaskSize, fargate_task_definition


@dataclass
class MetricsServiceArgs:
    """Placement and size of the metrics task."""

    cluster_arn: pulumi.Input[str]
    private_subnet_ids: list[pulumi.Output[str]]
    security_group_id: pulumi.Input[str]
    container: ContainerSpec
    size: TaskSize
    execution_role_arn: pulumi.Input[str]
    task_role_arn: pulumi.Input[str]
    tags: dict[str, str] = field(default_factory=dict)


class MetricsService(pulumi.ComponentResource):
    """Exactly one metrics publisher at a time."""

    service_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: MetricsServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Create the task definition and the one-task service."""
        super().__init__("jobqueue:infra:MetricsService", name, None, opts)
        task = fargate_task_definition(
            f"{name}-task",
            spec=args.container,
            size=args.size,
            execution_role_arn=args.execution_role_arn,
            task_role_arn=args.task_role_arn,
            parent=self,
        )
        service = aws.ecs.Service(
            f"{name}-service",
            cluster=args.cluster_arn,
            task_definition=task.arn,
            launch_type="FARGATE",
            desired_count=1,
            # 0%/100%: a deploy stops the old publisher before starting the new one, so two never
            # publish the same period twice (completed/failed counts would double).
            deployment_minimum_healthy_percent=0,
            deployment_maximum_percent=100,
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
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.service_name = service.name
        self.register_outputs({"service_name": service.name})
