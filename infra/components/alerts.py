"""The on-call topic: every alarm, ElastiCache event and failed ECS deployment notifies it.

Created before everything that notifies it (the cache's events, the services' deployment
alarms), so no component has to wait for the dashboard to exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

# EventBridge needs the topic's permission to publish; CloudWatch alarms and ElastiCache
# publish as the account and need none.
EVENTS_PRINCIPAL = "events.amazonaws.com"


@dataclass
class AlertsArgs:
    """Who gets told."""

    account_id: str
    alert_email: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


class Alerts(pulumi.ComponentResource):
    """An SNS topic, its policy and an optional e-mail subscription."""

    topic_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: AlertsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Create the topic, its policy and the subscription."""
        super().__init__("jobqueue:infra:Alerts", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        topic = aws.sns.Topic(f"{name}-alarms", tags=args.tags, opts=child)
        aws.sns.TopicPolicy(
            f"{name}-alarms",
            arn=topic.arn,
            policy=pulumi.Output.json_dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "AccountPublishes",
                            "Effect": "Allow",
                            "Principal": {"AWS": f"arn:aws:iam::{args.account_id}:root"},
                            "Action": "sns:Publish",
                            "Resource": topic.arn,
                            # Alarms and ElastiCache events publish as this account.
                            "Condition": {
                                "StringEquals": {"aws:PrincipalAccount": args.account_id}
                            },
                        },
                        {
                            "Sid": "EventBridgeRulesOfThisAccount",
                            "Effect": "Allow",
                            "Principal": {"Service": EVENTS_PRINCIPAL},
                            "Action": "sns:Publish",
                            "Resource": topic.arn,
                            "Condition": {"StringEquals": {"aws:SourceAccount": args.account_id}},
                        },
                    ],
                }
            ),
            opts=child,
        )
        if args.alert_email:
            aws.sns.TopicSubscription(
                f"{name}-alarms-email",
                topic=topic.arn,
                protocol="email",
                endpoint=args.alert_email,
                opts=child,
            )
        self.topic_arn = topic.arn
        self.register_outputs({"topic_arn": topic.arn})


def paging_alarm(
    resource_name: str,
    description: str,
    topic_arn: pulumi.Input[str],
    *,
    parent: pulumi.Resource,
    tags: dict[str, str],
    **metric: Any,
) -> aws.cloudwatch.MetricAlarm:
    """An alarm on `metric` that tells the on-call topic when it fires and when it clears."""
    return aws.cloudwatch.MetricAlarm(
        resource_name,
        alarm_description=description,
        alarm_actions=[topic_arn],
        ok_actions=[topic_arn],
        tags=tags,
        opts=pulumi.ResourceOptions(parent=parent),
        **metric,
    )
