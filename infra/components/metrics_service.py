"""The metrics task: one always-on Fargate task running `jobqueue metrics`.

Why a one-task service and not an EventBridge Scheduler rule: the contract publishes every 60 s,
zeros included, because alarms and target tracking go to INSUFFICIENT_DATA on gaps. The Scheduler's
finest rate is one minute and every run would be a new Fargate task (30-60 s to pull and start,
billed a minute minimum), so runs would overlap or leave gaps, and the canary would lose its
continuity. One long-running task publishes on time for about the price of the scheduled runs,
and ECS restarts it if it dies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from infra.components.fargate_service import FargateTask, Rollout, fargate_service


@dataclass
class MetricsServiceArgs:
    """The metrics task."""

    task: FargateTask
    tags: dict[str, str] = field(default_factory=dict)


class MetricsService(pulumi.ComponentResource):
    """Exactly one metrics publisher at a time."""

    service_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: MetricsServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Create the task definition and the one-task service."""
        super().__init__("jobqueue:infra:MetricsService", name, None, opts)
        service = fargate_service(
            name,
            args.task,
            # 0%/100%: a deploy stops the old publisher before starting the new one, so two never
            # publish the same period twice (completed/failed counts would double).
            Rollout(desired_count=1, minimum_healthy_percent=0, maximum_percent=100),
            parent=self,
            tags=args.tags,
        )
        self.service_name = service.name
        self.register_outputs({"service_name": service.name})
