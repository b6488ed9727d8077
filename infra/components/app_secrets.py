"""Application secrets that are not the cache token: the API keys."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_random as random


@dataclass
class AppSecretsArgs:
    """Tags for the secrets."""

    tags: dict[str, str] = field(default_factory=dict)


class AppSecrets(pulumi.ComponentResource):
    """API_KEYS in Secrets Manager, seeded with one generated key.

    Operators rotate or add keys with `aws secretsmanager put-secret-value` (comma-separated);
    the program ignores later changes to the value so a `pulumi up` never reverts a rotation.
    """

    api_keys_secret_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: AppSecretsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Create the secret and its first value."""
        super().__init__("jobqueue:infra:AppSecrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        first_key = random.RandomPassword(f"{name}-api-key", length=40, special=False, opts=child)
        secret = aws.secretsmanager.Secret(
            f"{name}-api-keys",
            description="Comma-separated API keys accepted by the job queue API (API_KEYS)",
            recovery_window_in_days=7,
            tags=args.tags,
            opts=child,
        )
        aws.secretsmanager.SecretVersion(
            f"{name}-api-keys",
            secret_id=secret.id,
            secret_string=first_key.result,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["secret_string"]),
        )
        self.api_keys_secret_arn = secret.arn
        self.register_outputs({"api_keys_secret_arn": secret.arn})
