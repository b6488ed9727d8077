"""Job outputs: a private, encrypted S3 bucket."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.components.buckets import deny_insecure_transport, private_bucket


@dataclass
class ArtifactsArgs:
    """How long job outputs live."""

    retention_days: int
    force_destroy: bool = False
    tags: dict[str, str] = field(default_factory=dict)


class Artifacts(pulumi.ComponentResource):
    """The ARTIFACT_BUCKET: no public access, SSE, TLS-only, outputs expire."""

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: ArtifactsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Create the bucket and its guard rails."""
        super().__init__("jobqueue:infra:Artifacts", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        bucket = private_bucket(
            name,
            expiry_rule_id="expire-job-outputs",
            retention_days=args.retention_days,
            parent=self,
            tags=args.tags,
            force_destroy=args.force_destroy,
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket.id,
            policy=bucket.arn.apply(_tls_only_policy),
            opts=child,
        )
        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.register_outputs({"bucket_name": self.bucket_name})


def _tls_only_policy(bucket_arn: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [deny_insecure_transport(bucket_arn)]})
