"""The load balancer's access logs: a private, encrypted S3 bucket that only ELB may write to.

ALB log delivery supports SSE-S3 only (not SSE-KMS), so the bucket uses AES256. Regions that
existed before August 2022 deliver as a regional ELB account; newer ones as the log-delivery
service principal (Elastic Load Balancing user guide, "Enable access logs").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.components.buckets import deny_insecure_transport, private_bucket

# The regional Elastic Load Balancing accounts of the older regions.
ELB_ACCOUNTS = {
    "us-east-1": "127311923021",
    "us-east-2": "033677994240",
    "us-west-1": "027434742980",
    "us-west-2": "797873946194",
    "af-south-1": "098369216593",
    "ap-east-1": "754344448648",
    "ap-south-1": "718504428378",
    "ap-northeast-1": "582318560864",
    "ap-northeast-2": "600734575887",
    "ap-northeast-3": "383597477331",
    "ap-southeast-1": "114774131450",
    "ap-southeast-2": "783225319266",
    "ap-southeast-3": "589379963580",
    "ca-central-1": "985666609251",
    "eu-central-1": "054676820928",
    "eu-west-1": "156460612806",
    "eu-west-2": "652711504416",
    "eu-west-3": "009996457667",
    "eu-south-1": "635631232127",
    "eu-north-1": "897822967062",
    "me-south-1": "076674570225",
    "sa-east-1": "507241528517",
}
LOG_DELIVERY_PRINCIPAL = "logdelivery.elasticloadbalancing.amazonaws.com"
LOG_PREFIX = "alb"


def delivery_principal(region: str) -> dict[str, str]:
    """Who writes the logs in `region`."""
    account = ELB_ACCOUNTS.get(region)
    if account:
        return {"AWS": f"arn:aws:iam::{account}:root"}
    return {"Service": LOG_DELIVERY_PRINCIPAL}


def delivery_policy(bucket_arn: str, region: str, account_id: str) -> str:
    """ELB may put objects under the log prefix of this account; nobody may use plain HTTP."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ElbLogDelivery",
                    "Effect": "Allow",
                    "Principal": delivery_principal(region),
                    "Action": "s3:PutObject",
                    "Resource": f"{bucket_arn}/{LOG_PREFIX}/AWSLogs/{account_id}/*",
                },
                deny_insecure_transport(bucket_arn),
            ],
        }
    )


@dataclass
class AccessLogsArgs:
    """Where and for how long."""

    region: str
    account_id: str
    retention_days: int
    tags: dict[str, str] = field(default_factory=dict)


class AccessLogs(pulumi.ComponentResource):
    """The access-log bucket with its delivery policy, encryption and expiry."""

    bucket_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: AccessLogsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Create the bucket and its guard rails."""
        super().__init__("jobqueue:infra:AccessLogs", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        bucket = private_bucket(
            name,
            expiry_rule_id="expire-access-logs",
            retention_days=args.retention_days,
            parent=self,
            tags=args.tags,
        )
        aws.s3.BucketPolicy(
            f"{name}-delivery",
            bucket=bucket.id,
            policy=bucket.arn.apply(lambda arn: delivery_policy(arn, args.region, args.account_id)),
            opts=child,
        )
        self.bucket_name = bucket.bucket
        self.register_outputs({"bucket_name": self.bucket_name})
