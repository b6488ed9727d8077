"""The Pulumi program's synthesized resources as a Terraform plan JSON, for checkov.

pulumi-aws is bridged from the Terraform AWS provider: every `aws:` resource is a Terraform
resource type with the same arguments, spelled in camelCase. So checkov's `terraform_plan`
framework, with its AWS policies, can judge the resources the program declares under mocks once
their types are mapped and their inputs written back in snake_case. References between resources
(an input holding another resource's id, ARN or name) become plan `references`, so checkov's
graph checks (a security group attached, a bucket with its public access block, flow logs on the
VPC) see the same connections the engine does.

The type map is explicit: a resource type the program starts to use without an entry here fails
the policy test instead of escaping the policy engine.
"""

from __future__ import annotations

import re
from typing import Any

from pulumi_harness import ProgramRun, Resource

SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"

TERRAFORM_TYPES = {
    "aws:appautoscaling/policy:Policy": "aws_appautoscaling_policy",
    "aws:appautoscaling/target:Target": "aws_appautoscaling_target",
    "aws:cloudwatch/dashboard:Dashboard": "aws_cloudwatch_dashboard",
    "aws:cloudwatch/eventRule:EventRule": "aws_cloudwatch_event_rule",
    "aws:cloudwatch/eventTarget:EventTarget": "aws_cloudwatch_event_target",
    "aws:cloudwatch/logGroup:LogGroup": "aws_cloudwatch_log_group",
    "aws:cloudwatch/metricAlarm:MetricAlarm": "aws_cloudwatch_metric_alarm",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "aws_default_security_group",
    "aws:ec2/eip:Eip": "aws_eip",
    "aws:ec2/flowLog:FlowLog": "aws_flow_log",
    "aws:ec2/internetGateway:InternetGateway": "aws_internet_gateway",
    "aws:ec2/natGateway:NatGateway": "aws_nat_gateway",
    "aws:ec2/routeTable:RouteTable": "aws_route_table",
    "aws:ec2/routeTableAssociation:RouteTableAssociation": "aws_route_table_association",
    "aws:ec2/securityGroup:SecurityGroup": "aws_security_group",
    "aws:ec2/subnet:Subnet": "aws_subnet",
    "aws:ec2/vpc:Vpc": "aws_vpc",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "aws_vpc_endpoint",
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": "aws_ecr_lifecycle_policy",
    "aws:ecr/repository:Repository": "aws_ecr_repository",
    "aws:ecs/cluster:Cluster": "aws_ecs_cluster",
    "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders": (
        "aws_ecs_cluster_capacity_providers"
    ),
    "aws:ecs/service:Service": "aws_ecs_service",
    "aws:ecs/taskDefinition:TaskDefinition": "aws_ecs_task_definition",
    "aws:elasticache/parameterGroup:ParameterGroup": "aws_elasticache_parameter_group",
    "aws:elasticache/replicationGroup:ReplicationGroup": "aws_elasticache_replication_group",
    "aws:elasticache/subnetGroup:SubnetGroup": "aws_elasticache_subnet_group",
    "aws:iam/role:Role": "aws_iam_role",
    "aws:iam/rolePolicy:RolePolicy": "aws_iam_role_policy",
    "aws:lb/listener:Listener": "aws_lb_listener",
    "aws:lb/loadBalancer:LoadBalancer": "aws_lb",
    "aws:lb/targetGroup:TargetGroup": "aws_lb_target_group",
    "aws:s3/bucket:Bucket": "aws_s3_bucket",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": (
        "aws_s3_bucket_lifecycle_configuration"
    ),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": "aws_s3_bucket_ownership_controls",
    "aws:s3/bucketPolicy:BucketPolicy": "aws_s3_bucket_policy",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": ("aws_s3_bucket_public_access_block"),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        "aws_s3_bucket_server_side_encryption_configuration"
    ),
    "aws:secretsmanager/secret:Secret": "aws_secretsmanager_secret",
    "aws:secretsmanager/secretVersion:SecretVersion": "aws_secretsmanager_secret_version",
    "aws:sns/topic:Topic": "aws_sns_topic",
    "aws:sns/topicPolicy:TopicPolicy": "aws_sns_topic_policy",
    "aws:sns/topicSubscription:TopicSubscription": "aws_sns_topic_subscription",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": (
        "aws_vpc_security_group_egress_rule"
    ),
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": (
        "aws_vpc_security_group_ingress_rule"
    ),
}
# Not AWS resources: components (their children are scanned), the image build (a docker
# provider resource checkov has no policy for; the Dockerfile is scanned on its own) and the
# random provider's password generator.
NOT_SCANNED_PREFIXES = ("jobqueue:infra:", "docker-build:", "random:")
# Map-typed arguments: their keys are data (tag names, dimension names), not argument names.
MAP_ARGUMENTS = frozenset({"tags", "tags_all", "dimensions"})
# The bridge names repeatable Terraform blocks in the plural (`default_action` blocks are
# `defaultActions`); checkov reads Terraform's names. Every plural this program's inputs use.
SINGULAR_BLOCKS = {
    "capacityProviderStrategies": "capacity_provider_strategy",
    "defaultActions": "default_action",
    "encryptionConfigurations": "encryption_configuration",
    "loadBalancers": "load_balancer",
    "metricQueries": "metric_query",
    "parameters": "parameter",
    "routes": "route",
    "rules": "rule",
    "settings": "setting",
    "stepAdjustments": "step_adjustment",
    "volumes": "volume",
}


def snake(name: str) -> str:
    """The Terraform argument name of a bridged input name."""
    if name in SINGULAR_BLOCKS:
        return SINGULAR_BLOCKS[name]
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def terraform_name(resource: Resource) -> str:
    """A Terraform identifier from the logical name."""
    return re.sub(r"[^A-Za-z0-9_]", "_", resource.name)


def unscanned_types(run: ProgramRun) -> set[str]:
    """Types the program declares that neither map to Terraform nor are known to be skipped."""
    return {
        r.typ
        for r in run.resources
        if r.typ not in TERRAFORM_TYPES and not r.typ.startswith(NOT_SCANNED_PREFIXES)
    }


def _values(value: Any, known: dict[str, str], key: str = "") -> Any:
    """Inputs in Terraform's spelling; another resource's id, ARN or name becomes a reference
    (`aws_vpc.x.id`), as in a plan where it is not known yet, so checkov draws the edge."""
    if isinstance(value, dict):
        if SECRET_SIG_KEY in value:
            return _values(value.get("value"), known, key)
        if key in MAP_ARGUMENTS:
            return dict(value)
        return {snake(k): _values(v, known, snake(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_values(v, known, key) for v in value]
    if isinstance(value, str) and value in known:
        return known[value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the engine's numbers are floats; Terraform's ports are integers
    return value


def _addresses(run: ProgramRun) -> dict[str, str]:
    """Every id, ARN and name a resource is known by -> a reference to it."""
    known: dict[str, str] = {}
    for r in run.resources:
        tf_type = TERRAFORM_TYPES.get(r.typ)
        if tf_type is None:
            continue
        address = f"{tf_type}.{terraform_name(r)}"
        handles = {"id": r.resource_id, "arn": r.state.get("arn")}
        if tf_type == "aws_s3_bucket":
            handles["bucket"] = r.state.get("bucket")
        for attribute, handle in handles.items():
            # First come, first named: a later resource whose *input* is this handle (a bucket
            # policy's `bucket`, an event target's `arn`) echoes it in its mocked state.
            if isinstance(handle, str):
                known.setdefault(handle, f"{address}.{attribute}")
    return known


def plan(run: ProgramRun) -> dict[str, Any]:
    """A Terraform plan JSON document of every AWS resource in `run`."""
    known = _addresses(run)
    planned = [
        {
            "address": f"{tf_type}.{terraform_name(r)}",
            "mode": "managed",
            "type": tf_type,
            "name": terraform_name(r),
            "values": _values(r.inputs, known),
        }
        for r in run.resources
        if (tf_type := TERRAFORM_TYPES.get(r.typ)) is not None
    ]
    return {
        "format_version": "1.2",
        "terraform_version": "1.9.0",
        "planned_values": {"root_module": {"resources": planned}},
    }
