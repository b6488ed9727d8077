"""Security groups: what may reach what, for the load balancer, the three roles and the cache.

Groups reference each other rather than CIDRs, so a task's address never matters and a new task
is reachable exactly as its service's group allows. Egress is per role and per need:

- every task: HTTPS (443) to AWS APIs (ECR, CloudWatch, Secrets Manager, S3, SES, the ECS agent's
  backend) through the NAT gateways; AWS publishes no stable CIDRs for them, so 0.0.0.0/0:443;
- every task: the cache port, to the cache's group only;
- no SMTP: the deployed workers send e-mail through the SES API, over HTTPS;
- the load balancer: the API port, to the API tasks' group only.

The cache group has no egress at all (Valkey answers on the connections it accepted).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

ANYWHERE_V4 = "0.0.0.0/0"
HTTPS_PORT = 443
HTTP_PORT = 80
TASK_ROLES = ("api", "worker", "metrics")


@dataclass
class FirewallArgs:
    """Which ports are open, and to whom."""

    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    api_port: int
    cache_port: int
    https: bool
    # With TLS: also open port 80, which only answers a redirect to HTTPS.
    http_redirect: bool
    # False: the load balancer is internal and accepts only the VPC's own range.
    internet_facing: bool
    tags: dict[str, str] = field(default_factory=dict)


class Firewall(pulumi.ComponentResource):
    """One security group per role (ALB, API, workers, metrics) and one for the cache."""

    alb_sg_id: pulumi.Output[str]
    api_sg_id: pulumi.Output[str]
    worker_sg_id: pulumi.Output[str]
    metrics_sg_id: pulumi.Output[str]
    cache_sg_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: FirewallArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Create the groups and the rules between them."""
        super().__init__("jobqueue:infra:Firewall", name, None, opts)
        self._name = name
        self._args = args
        self._child = pulumi.ResourceOptions(parent=self)
        alb = self._group("alb")
        tasks = {role: self._group(role) for role in TASK_ROLES}
        cache = self._group("cache")
        self._edge(alb, tasks["api"])
        for role, group in tasks.items():
            self._task_egress(role, group, cache)
        self.alb_sg_id = alb.id
        self.api_sg_id = tasks["api"].id
        self.worker_sg_id = tasks["worker"].id
        self.metrics_sg_id = tasks["metrics"].id
        self.cache_sg_id = cache.id
        self.register_outputs(
            {
                "alb_sg_id": alb.id,
                "api_sg_id": self.api_sg_id,
                "worker_sg_id": self.worker_sg_id,
                "metrics_sg_id": self.metrics_sg_id,
                "cache_sg_id": cache.id,
            }
        )

    def _edge(self, alb: aws.ec2.SecurityGroup, api: aws.ec2.SecurityGroup) -> None:
        args = self._args
        if not args.https:
            ports = [HTTP_PORT]
        else:
            ports = [HTTP_PORT, HTTPS_PORT] if args.http_redirect else [HTTPS_PORT]
        source = ANYWHERE_V4 if args.internet_facing else args.vpc_cidr
        inside = "" if args.internet_facing else " (inside the VPC)"
        for port in ports:
            # The ALB is IPv4-only (its default address type), so no ::/0 rule is needed.
            self._ingress(
                f"alb-in-{port}", alb, port, f"Clients to the load balancer{inside}", source
            )
        self._egress("alb-to-api", alb, args.api_port, "Load balancer to API tasks", api)
        self._ingress(
            "api-from-alb",
            api,
            args.api_port,
            "API tasks accept traffic only from the load balancer",
            alb,
        )

    def _task_egress(
        self, role: str, group: aws.ec2.SecurityGroup, cache: aws.ec2.SecurityGroup
    ) -> None:
        port = self._args.cache_port
        self._egress(f"{role}-https", group, HTTPS_PORT, "AWS APIs over HTTPS", ANYWHERE_V4)
        self._egress(f"{role}-to-cache", group, port, "Valkey", cache)
        self._ingress(f"cache-from-{role}", cache, port, f"Valkey from {role} tasks", group)

    def _ingress(
        self,
        suffix: str,
        group: aws.ec2.SecurityGroup,
        port: int,
        description: str,
        source: aws.ec2.SecurityGroup | str,
    ) -> None:
        rule = aws.vpc.SecurityGroupIngressRule
        self._rule(rule, suffix, group, port, description=description, peer=source)

    def _egress(
        self,
        suffix: str,
        group: aws.ec2.SecurityGroup,
        port: int,
        description: str,
        to: aws.ec2.SecurityGroup | str,
    ) -> None:
        rule = aws.vpc.SecurityGroupEgressRule
        self._rule(rule, suffix, group, port, description=description, peer=to)

    def _rule(
        self,
        rule: type[aws.vpc.SecurityGroupIngressRule | aws.vpc.SecurityGroupEgressRule],
        suffix: str,
        group: aws.ec2.SecurityGroup,
        port: int,
        *,
        description: str,
        peer: aws.ec2.SecurityGroup | str,
    ) -> None:
        """One TCP port of `group`, to or from `peer`: a security group, or an IPv4 range."""
        rule(
            f"{self._name}-{suffix}",
            security_group_id=group.id,
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            cidr_ipv4=peer if isinstance(peer, str) else None,
            referenced_security_group_id=None if isinstance(peer, str) else peer.id,
            description=description,
            opts=self._child,
        )

    def _group(self, role: str) -> aws.ec2.SecurityGroup:
        return aws.ec2.SecurityGroup(
            f"{self._name}-{role}",
            vpc_id=self._args.vpc_id,
            description=f"jobqueue {role}",
            tags={**self._args.tags, "Name": f"{self._name}-{role}"},
            opts=self._child,
        )
