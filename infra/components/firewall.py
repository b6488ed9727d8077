"""Security groups: only the load balancer is reachable from the internet.

Groups reference each other rather than CIDRs, so a task's address never matters and a new
task is reachable exactly as its service's group allows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

ANYWHERE_V4 = "0.0.0.0/0"


@dataclass
class FirewallArgs:
    """Which ports are open."""

    vpc_id: pulumi.Input[str]
    api_port: int
    https: bool
    tags: dict[str, str] = field(default_factory=dict)


class Firewall(pulumi.ComponentResource):
    """One security group per role: ALB, API, workers, metrics task."""

    alb_sg_id: pulumi.Output[str]
    api_sg_id: pulumi.Output[str]
    worker_sg_id: pulumi.Output[str]
    metrics_sg_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: FirewallArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Create the groups and the rules between them."""
        super().__init__("jobqueue:infra:Firewall", name, None, opts)
        self._name = name
        self._args = args
        self._child = pulumi.ResourceOptions(parent=self)
        alb, api, worker, metrics = (
            self._group(role) for role in ("alb", "api", "worker", "metrics")
        )
        public_ports = [80, 443] if args.https else [80]
        for port in public_ports:
            # The ALB is IPv4-only (its default address type), so no ::/0 rule is needed.
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-alb-in-{port}",
                security_group_id=alb.id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                cidr_ipv4=ANYWHERE_V4,
                description="Public HTTP(S) to the load balancer",
                opts=self._child,
            )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-alb-to-api",
            security_group_id=alb.id,
            referenced_security_group_id=api.id,
            ip_protocol="tcp",
            from_port=args.api_port,
            to_port=args.api_port,
            description="Load balancer to API tasks",
            opts=self._child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-api-from-alb",
            security_group_id=api.id,
            referenced_security_group_id=alb.id,
            ip_protocol="tcp",
            from_port=args.api_port,
            to_port=args.api_port,
            description="API tasks accept traffic only from the load balancer",
            opts=self._child,
        )
        for role, group in (("api", api), ("worker", worker), ("metrics", metrics)):
            # Tasks reach Redis, ECR, CloudWatch, S3, SES and Secrets Manager through NAT; they
            # accept nothing inbound except the API from the ALB.
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-{role}-out",
                security_group_id=group.id,
                ip_protocol="-1",
                cidr_ipv4=ANYWHERE_V4,
                description="Outbound to AWS APIs and Redis",
                opts=self._child,
            )
        self.alb_sg_id = alb.id
        self.api_sg_id = api.id
        self.worker_sg_id = worker.id
        self.metrics_sg_id = metrics.id
        self.register_outputs(
            {
                "alb_sg_id": alb.id,
                "api_sg_id": api.id,
                "worker_sg_id": worker.id,
                "metrics_sg_id": metrics.id,
            }
        )

    def _group(self, role: str) -> aws.ec2.SecurityGroup:
        return aws.ec2.SecurityGroup(
            f"{self._name}-{role}",
            vpc_id=self._args.vpc_id,
            description=f"jobqueue {role}",
            tags={**self._args.tags, "Name": f"{self._name}-{role}"},
            opts=self._child,
        )
