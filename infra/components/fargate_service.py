"""One Fargate service: the task definition, the ECS service and its scalable target (helpers).

The API, the workers and the metrics task are the same block with different numbers: how many
tasks, how a deployment replaces them, which alarms roll it back, whether autoscaling owns the
count. These are functions, not a component, so the resources keep their parents (the role's
own component) and therefore their URNs: wrapping them in a new component would replace every
service and task definition on the next `pulumi up`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.components.containers import SCRATCH_VOLUME, ContainerSpec, container_definitions


@dataclass
class TaskSize:
    """Fargate task size and CPU architecture."""

    cpu: int
    memory: int
    architecture: str = "X86_64"

    def __post_init__(self) -> None:
        # Fargate allows 2-8 GB per vCPU above 0.5 vCPU (0.25 vCPU takes 0.5-2 GB).
        low, high = (512, 2048) if self.cpu == 256 else (self.cpu * 2, self.cpu * 8)
        if not low <= self.memory <= high:
            raise ValueError(f"Fargate cannot run cpu={self.cpu} with memory={self.memory}")
        if self.architecture not in ("X86_64", "ARM64"):
            raise ValueError("cpuArchitecture must be X86_64 or ARM64")


@dataclass
class FargateTask:
    """What one role runs and where: its container, size and roles, in the private subnets."""

    cluster_arn: pulumi.Input[str]
    subnet_ids: list[pulumi.Output[str]]
    security_group_id: pulumi.Input[str]
    container: ContainerSpec
    size: TaskSize
    execution_role_arn: pulumi.Input[str]
    task_role_arn: pulumi.Input[str]


@dataclass(frozen=True)
class DeploymentAlarm:
    """An alarm a service's deployments watch: its fixed name and the resource."""

    name: str
    alarm: aws.cloudwatch.MetricAlarm


@dataclass(frozen=True)
class Rollout:
    """How many tasks run and how a deployment replaces them."""

    desired_count: int
    minimum_healthy_percent: int
    maximum_percent: int
    # Alarms whose ALARM state rolls a deployment back; the service is created after them so
    # ECS finds them.
    alarms: Sequence[DeploymentAlarm] = ()
    # Application Auto Scaling owns the count after creation: `pulumi up` must not reset it.
    autoscaled: bool = False


def fargate_service(
    name: str,
    task: FargateTask,
    rollout: Rollout,
    *,
    parent: pulumi.Resource,
    tags: dict[str, str],
    capacity_provider: str | None = None,
    load_balancer: aws.ecs.ServiceLoadBalancerArgs | None = None,
    health_check_grace_period_seconds: int | None = None,
    depends_on: Sequence[pulumi.Resource] = (),
) -> aws.ecs.Service:
    """`<name>-task` and `<name>-service`: a one-container task in private subnets, no public
    IP, rolled back by the circuit breaker (and `rollout.alarms`).

    `capacity_provider` None launches on FARGATE by launch type; a name (FARGATE, FARGATE_SPOT)
    uses that capacity provider instead (switching between the two replaces the service).
    """
    definition = _task_definition(f"{name}-task", task, parent)
    return aws.ecs.Service(
        f"{name}-service",
        cluster=task.cluster_arn,
        task_definition=definition.arn,
        launch_type=None if capacity_provider else "FARGATE",
        capacity_provider_strategies=(
            [
                aws.ecs.ServiceCapacityProviderStrategyArgs(
                    capacity_provider=capacity_provider, weight=1
                )
            ]
            if capacity_provider
            else None
        ),
        desired_count=rollout.desired_count,
        deployment_minimum_healthy_percent=rollout.minimum_healthy_percent,
        deployment_maximum_percent=rollout.maximum_percent,
        deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(
            enable=True, rollback=True
        ),
        alarms=(
            aws.ecs.ServiceAlarmsArgs(
                alarm_names=[a.name for a in rollout.alarms], enable=True, rollback=True
            )
            if rollout.alarms
            else None
        ),
        health_check_grace_period_seconds=health_check_grace_period_seconds,
        network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
            subnets=task.subnet_ids,
            security_groups=[task.security_group_id],
            assign_public_ip=False,
        ),
        load_balancers=[load_balancer] if load_balancer else None,
        propagate_tags="SERVICE",
        tags=tags,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=[*depends_on, *(a.alarm for a in rollout.alarms)],
            ignore_changes=["desired_count"] if rollout.autoscaled else None,
        ),
    )


def _task_definition(
    name: str, task: FargateTask, parent: pulumi.Resource
) -> aws.ecs.TaskDefinition:
    """A one-container Fargate task definition."""
    return aws.ecs.TaskDefinition(
        name,
        family=name,
        requires_compatibilities=["FARGATE"],
        network_mode="awsvpc",
        cpu=str(task.size.cpu),
        memory=str(task.size.memory),
        runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
            operating_system_family="LINUX", cpu_architecture=task.size.architecture
        ),
        execution_role_arn=task.execution_role_arn,
        task_role_arn=task.task_role_arn,
        container_definitions=container_definitions(task.container),
        volumes=[aws.ecs.TaskDefinitionVolumeArgs(name=SCRATCH_VOLUME)],
        opts=pulumi.ResourceOptions(parent=parent),
    )


def scalable_target(
    name: str,
    cluster_name: pulumi.Input[str],
    service: aws.ecs.Service,
    bounds: tuple[int, int],
    parent: pulumi.Resource,
) -> aws.appautoscaling.Target:
    """`<name>-scaling`: the service's desired count as Application Auto Scaling's, within
    `bounds` (min, max)."""
    return aws.appautoscaling.Target(
        f"{name}-scaling",
        service_namespace="ecs",
        scalable_dimension="ecs:service:DesiredCount",
        resource_id=pulumi.Output.concat("service/", cluster_name, "/", service.name),
        min_capacity=bounds[0],
        max_capacity=bounds[1],
        opts=pulumi.ResourceOptions(parent=parent),
    )


TargetTracking = (
    aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs
    | aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgsDict
)


def target_tracking_policy(
    name: str, target: aws.appautoscaling.Target, config: TargetTracking, parent: pulumi.Resource
) -> aws.appautoscaling.Policy:
    """A target-tracking policy on `target`."""
    return aws.appautoscaling.Policy(
        name,
        policy_type="TargetTrackingScaling",
        service_namespace=target.service_namespace,
        scalable_dimension=target.scalable_dimension,
        resource_id=target.resource_id,
        target_tracking_scaling_policy_configuration=config,
        opts=pulumi.ResourceOptions(parent=parent),
    )
