"""A private S3 bucket with the guard rails every bucket here gets (helpers, not a component).

Functions, so the bucket's resources stay children of the component that owns it (the job
outputs, the ALB's access logs) and keep their URNs.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws


def private_bucket(
    name: str,
    *,
    expiry_rule_id: str,
    retention_days: int,
    parent: pulumi.Resource,
    tags: dict[str, str],
    force_destroy: bool | None = None,
) -> aws.s3.Bucket:
    """`<name>-bucket`: no public access, objects owned by the bucket's account, SSE-S3 (which
    ALB log delivery requires; SSE-KMS it cannot write), and objects that expire after
    `retention_days` (incomplete uploads after a day)."""
    child = pulumi.ResourceOptions(parent=parent)
    bucket = aws.s3.Bucket(f"{name}-bucket", force_destroy=force_destroy, tags=tags, opts=child)
    aws.s3.BucketPublicAccessBlock(
        f"{name}-public-access",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=child,
    )
    aws.s3.BucketOwnershipControls(
        f"{name}-ownership",
        bucket=bucket.id,
        rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
        opts=child,
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-sse",
        bucket=bucket.id,
        rules=[
            aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="AES256"
                )
            )
        ],
        opts=child,
    )
    aws.s3.BucketLifecycleConfiguration(
        f"{name}-expiry",
        bucket=bucket.id,
        rules=[
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id=expiry_rule_id,
                status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(
                    days=retention_days
                ),
                abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                    days_after_initiation=1
                ),
            )
        ],
        opts=child,
    )
    return bucket


def deny_insecure_transport(bucket_arn: str) -> dict[str, Any]:
    """The bucket policy statement that refuses every request over plain HTTP."""
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
