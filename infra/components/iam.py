"""IAM: per service, an execution role (what ECS needs to start it) and a task role (what it does).

Each role reads only its own secrets, pulls only its own image and writes only its own logs, so a
compromised metrics task can neither read the API keys nor touch job outputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

ECS_TASKS_PRINCIPAL = "ecs-tasks.amazonaws.com"

Statement = dict[str, Any]


@dataclass
class ServiceAccess:
    """What one service's containers need."""

    repository_arn: pulumi.Input[str]
    log_group_arn: pulumi.Input[str]
    secret_arns: list[pulumi.Input[str]]
    task_statements: list[Statement]


@dataclass
class IamArgs:
    """The services and their access."""

    account_id: str
    services: dict[str, ServiceAccess]
    tags: dict[str, str] = field(default_factory=dict)


def statement(
    actions: list[str], resources: list[Any], condition: dict[str, Any] | None = None
) -> Statement:
    """An Allow statement; `resources` may hold Outputs (resolved by Output.json_dumps)."""
    stmt: Statement = {"Effect": "Allow", "Action": actions, "Resource": resources}
    if condition:
        stmt["Condition"] = condition
    return stmt


def policy_document(statements: list[Statement]) -> pulumi.Output[str]:
    """A policy document whose ARNs may still be unknown."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": statements})


def _assume_role_policy(account_id: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": ECS_TASKS_PRINCIPAL},
                    "Action": "sts:AssumeRole",
                    # Confused-deputy guard: only ECS acting for this account may assume it.
                    "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
                }
            ],
        }
    )


def execution_statements(access: ServiceAccess) -> list[Statement]:
    """Pull the image, write the logs, read the secrets: nothing else."""
    statements = [
        # GetAuthorizationToken is account-wide by design; AWS accepts only "*" here.
        statement(["ecr:GetAuthorizationToken"], ["*"]),
        statement(
            ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            [access.repository_arn],
        ),
        statement(
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [pulumi.Output.concat(access.log_group_arn, ":log-stream:*")],
        ),
    ]
    if access.secret_arns:
        statements.append(statement(["secretsmanager:GetSecretValue"], access.secret_arns))
    return statements


class Iam(pulumi.ComponentResource):
    """One execution role and one task role per service."""

    execution_role_arns: dict[str, pulumi.Output[str]]
    task_role_arns: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: IamArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Create the roles and their inline policies."""
        super().__init__("jobqueue:infra:Iam", name, None, opts)
        self._name = name
        self._args = args
        self.execution_role_arns = {}
        self.task_role_arns = {}
        for role, access in args.services.items():
            self.execution_role_arns[role] = self._role(
                f"{role}-execution", execution_statements(access)
            )
            self.task_role_arns[role] = self._role(f"{role}-task", access.task_statements)
        self.register_outputs(
            {"execution_role_arns": self.execution_role_arns, "task_role_arns": self.task_role_arns}
        )

    def _role(self, suffix: str, statements: list[Statement]) -> pulumi.Output[str]:
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{self._name}-{suffix}",
            assume_role_policy=_assume_role_policy(self._args.account_id),
            tags=self._args.tags,
            opts=child,
        )
        if statements:
            aws.iam.RolePolicy(
                f"{self._name}-{suffix}",
                role=role.id,
                policy=policy_document(statements),
                opts=child,
            )
        return role.arn


def _artifact_statements(
    bucket_arn: pulumi.Input[str], object_actions: list[str]
) -> list[Statement]:
    # ListBucket on the bucket itself makes a missing key answer NoSuchKey (a 404 to clients)
    # rather than AccessDenied, which the service would report as an AWS failure (a 5xx).
    return [
        statement(object_actions, [pulumi.Output.concat(bucket_arn, "/*")]),
        statement(["s3:ListBucket"], [bucket_arn]),
    ]


def api_task_statements(bucket_arn: pulumi.Input[str]) -> list[Statement]:
    """The API only reads job outputs back (downloads); workers write them."""
    return _artifact_statements(bucket_arn, ["s3:GetObject"])


def worker_task_statements(
    bucket_arn: pulumi.Input[str],
    ses_identities_arn: str | None,
    email_from: str | None,
    task_arn_pattern: pulumi.Input[str],
) -> list[Statement]:
    """Read job inputs and write outputs, send mail as the configured sender, protect its task.

    Only what the service calls: no DeleteObject (the bucket's lifecycle rule expires outputs),
    only SendRawEmail (service/email_backends.py), only the agent's PUT (UpdateTaskProtection).
    SES authorizes a send against every identity it involves: the sender's, and in the SES
    sandbox each recipient's too, so the resource is the account's identities and the condition
    on the sender address is the fence. No sender configured: no SES permission at all.
    """
    statements = [
        *_artifact_statements(bucket_arn, ["s3:GetObject", "s3:PutObject"]),
        # The agent's task-protection endpoint calls this with the task role's credentials.
        statement(["ecs:UpdateTaskProtection"], [task_arn_pattern]),
    ]
    if ses_identities_arn and email_from:
        statements.append(
            statement(
                ["ses:SendRawEmail"],
                [ses_identities_arn],
                {"StringEquals": {"ses:FromAddress": email_from}},
            )
        )
    return statements


def metrics_task_statements(namespace: str) -> list[Statement]:
    """PutMetricData has no resource-level scoping, so the namespace condition is the fence."""
    return [
        statement(
            ["cloudwatch:PutMetricData"],
            ["*"],
            {"StringEquals": {"cloudwatch:namespace": namespace}},
        )
    ]
