"""The VPC: public subnets for the load balancer and NAT, private subnets for every task.

Zones are chosen by zone ID among the region's standard zones (opt-in status
`opt-in-not-required`): zone names are shuffled per account, and the full list includes Local
Zones and Wavelength Zones, where ElastiCache and NAT gateways are not offered.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.components.iam import policy_document, statement

# Each subnet is a /20 (4091 usable addresses): Fargate tasks take one ENI each, so a worker fleet
# of hundreds of tasks fits in one AZ's private subnet with room for deployments (200% peak).
SUBNET_PREFIX = 20
# Private subnets start after the first 8 /20 blocks, which are left to public subnets.
PRIVATE_OFFSET = 8


@dataclass
class NetworkArgs:
    """Shape of the VPC."""

    cidr: str
    az_count: int
    nat_per_az: bool
    region: str
    flow_logs: bool = True
    flow_log_retention_days: int = 30
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 2 <= self.az_count <= 3:
            raise ValueError("azCount must be 2 or 3 (ElastiCache Multi-AZ needs at least 2)")
        if ipaddress.ip_network(self.cidr).prefixlen > 16:
            raise ValueError("vpcCidr must be a /16 or larger (subnets are /20 blocks)")


class Network(pulumi.ComponentResource):
    """A VPC over 2-3 AZs with public and private subnets and NAT (one, or one per AZ)."""

    vpc_id: pulumi.Output[str]
    vpc_cidr: str
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Create the VPC, its subnets, gateways and routes."""
        super().__init__("jobqueue:infra:Network", name, None, opts)
        self._name = name
        self._args = args
        self._child = pulumi.ResourceOptions(parent=self)
        azs = self._availability_zones()
        self._vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={**args.tags, "Name": name},
            opts=self._child,
        )
        blocks = list(ipaddress.ip_network(args.cidr).subnets(new_prefix=SUBNET_PREFIX))
        public = [self._subnet(az, str(blocks[i]), "public") for i, az in enumerate(azs)]
        private = [
            self._subnet(az, str(blocks[PRIVATE_OFFSET + i]), "private") for i, az in enumerate(azs)
        ]
        # Adopt the VPC's default security group and leave it without rules: anything launched
        # without a group of its own then reaches nothing and is reachable from nothing.
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=self._vpc.id,
            ingress=[],
            egress=[],
            tags={**args.tags, "Name": f"{name}-default-unused"},
            opts=self._child,
        )
        if args.flow_logs:
            self._flow_logs()
        self._route_public(public)
        nat_ids = self._nat_gateways(public)
        route_table_ids = [self._route_private(i, s, nat_ids) for i, s in enumerate(private)]
        # S3 traffic (job outputs, ECR image layers) goes through a free gateway endpoint
        # instead of paying NAT data processing per GB.
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=self._vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=route_table_ids,
            tags=args.tags,
            opts=self._child,
        )
        self.vpc_id = self._vpc.id
        self.vpc_cidr = args.cidr
        self.public_subnet_ids = [s.id for s in public]
        self.private_subnet_ids = [s.id for s in private]
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "public_subnet_ids": self.public_subnet_ids,
                "private_subnet_ids": self.private_subnet_ids,
            }
        )

    def _availability_zones(self) -> list[str]:
        """Zone IDs (e.g. use1-az1) of the first standard zones, sorted so the choice is stable."""
        zones = aws.get_availability_zones(
            state="available",
            filters=[
                aws.GetAvailabilityZonesFilterArgs(
                    name="opt-in-status", values=["opt-in-not-required"]
                ),
                aws.GetAvailabilityZonesFilterArgs(name="zone-type", values=["availability-zone"]),
            ],
            opts=pulumi.InvokeOptions(parent=self),
        ).zone_ids
        if len(zones) < self._args.az_count:
            raise ValueError(
                f"jobqueue:azCount = {self._args.az_count}, but {self._args.region} has only "
                f"{len(zones)} standard availability zones"
            )
        return sorted(zones)[: self._args.az_count]

    def _subnet(self, zone_id: str, cidr: str, tier: str) -> aws.ec2.Subnet:
        return aws.ec2.Subnet(
            f"{self._name}-{tier}-{zone_id}",
            vpc_id=self._vpc.id,
            availability_zone_id=zone_id,
            cidr_block=cidr,
            # No subnet hands out public IPs: the NAT gateways have Elastic IPs and the load
            # balancer its own addresses, so nothing launched here becomes public by accident.
            map_public_ip_on_launch=False,
            tags={**self._args.tags, "Name": f"{self._name}-{tier}-{zone_id}", "Tier": tier},
            opts=self._child,
        )

    def _flow_logs(self) -> None:
        """Every accepted and rejected flow to CloudWatch Logs, kept for the configured days."""
        group = aws.cloudwatch.LogGroup(
            f"{self._name}-flow-logs",
            name=f"/vpc/{self._name}/flow-logs",
            retention_in_days=self._args.flow_log_retention_days,
            tags=self._args.tags,
            opts=self._child,
        )
        role = aws.iam.Role(
            f"{self._name}-flow-logs",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
            tags=self._args.tags,
            opts=self._child,
        )
        aws.iam.RolePolicy(
            f"{self._name}-flow-logs",
            role=role.id,
            policy=policy_document(
                [
                    statement(
                        ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                        [pulumi.Output.concat(group.arn, ":*")],
                    )
                ]
            ),
            opts=self._child,
        )
        aws.ec2.FlowLog(
            f"{self._name}-flow-log",
            vpc_id=self._vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            tags=self._args.tags,
            opts=self._child,
        )

    def _route_public(self, subnets: list[aws.ec2.Subnet]) -> None:
        igw = aws.ec2.InternetGateway(
            f"{self._name}-igw", vpc_id=self._vpc.id, tags=self._args.tags, opts=self._child
        )
        table = aws.ec2.RouteTable(
            f"{self._name}-public",
            vpc_id=self._vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)],
            tags=self._args.tags,
            opts=self._child,
        )
        for i, subnet in enumerate(subnets):
            aws.ec2.RouteTableAssociation(
                f"{self._name}-public-{i}",
                subnet_id=subnet.id,
                route_table_id=table.id,
                opts=self._child,
            )

    def _nat_gateways(self, public: list[aws.ec2.Subnet]) -> list[pulumi.Output[str]]:
        # One NAT saves ~$33/month per AZ but makes its AZ a single point of egress: fine for
        # dev, while prod takes one per AZ so an AZ outage cannot cut the others off.
        count = len(public) if self._args.nat_per_az else 1
        ids = []
        for i in range(count):
            eip = aws.ec2.Eip(
                f"{self._name}-nat-{i}", domain="vpc", tags=self._args.tags, opts=self._child
            )
            nat = aws.ec2.NatGateway(
                f"{self._name}-nat-{i}",
                allocation_id=eip.id,
                subnet_id=public[i].id,
                tags=self._args.tags,
                opts=self._child,
            )
            ids.append(nat.id)
        return ids

    def _route_private(
        self, index: int, subnet: aws.ec2.Subnet, nat_ids: list[pulumi.Output[str]]
    ) -> pulumi.Output[str]:
        table = aws.ec2.RouteTable(
            f"{self._name}-private-{index}",
            vpc_id=self._vpc.id,
            routes=[
                aws.ec2.RouteTableRouteArgs(
                    cidr_block="0.0.0.0/0", nat_gateway_id=nat_ids[index % len(nat_ids)]
                )
            ],
            tags=self._args.tags,
            opts=self._child,
        )
        aws.ec2.RouteTableAssociation(
            f"{self._name}-private-{index}",
            subnet_id=subnet.id,
            route_table_id=table.id,
            opts=self._child,
        )
        return table.id
