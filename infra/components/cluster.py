"""The ECS cluster and one log group per service."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws


@dataclass
class ClusterArgs:
    """Cluster options and log retention."""

    roles: tuple[str, ...]
    log_retention_days: int
    container_insights: bool
    tags: dict[str, str] = field(default_factory=dict)


class Cluster(pulumi.ComponentResource):
    """A Fargate cluster (with Fargate Spot available) and the services' log groups."""

    cluster_arn: pulumi.Output[str]
    cluster_name: pulumi.Output[str]
    log_group_names: dict[str, pulumi.Output[str]]
    log_group_arns: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Create the cluster and the log groups."""
        super().__init__("jobqueue:infra:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            settings=[
                aws.ecs.ClusterSettingArgs(
                    name="containerInsights",
                    value="enabled" if args.container_insights else "disabled",
                )
            ],
            tags=args.tags,
            opts=child,
        )
        aws.ecs.ClusterCapacityProviders(
            f"{name}-capacity",
            cluster_name=cluster.name,
            capacity_providers=["FARGATE", "FARGATE_SPOT"],
            opts=child,
        )
        self.log_group_names = {}
        self.log_group_arns = {}
        for role in args.roles:
            group = aws.cloudwatch.LogGroup(
                f"{name}-{role}",
                name=f"/ecs/{name}/{role}",
                retention_in_days=args.log_retention_days,
                tags=args.tags,
                opts=child,
            )
            self.log_group_names[role] = group.name
            self.log_group_arns[role] = group.arn
        self.cluster_arn = cluster.arn
        self.cluster_name = cluster.name
        self.register_outputs({"cluster_arn": cluster.arn, "cluster_name": cluster.name})
