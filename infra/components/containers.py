"""Container definitions for the ECS task definitions (a helper, not a resource)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

SCRATCH_VOLUME = "scratch"

# Names that must never appear in a plain `environment` block: they arrive through `secrets`.
SECRET_ENV_NAMES = frozenset({"REDIS_PASSWORD", "API_KEYS"})


@dataclass
class ContainerSpec:
    """One container: its image, settings, secrets and logs."""

    name: str
    image: pulumi.Input[str]
    region: str
    log_group: pulumi.Input[str]
    environment: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    # Environment variable name -> Secrets Manager secret ARN.
    secrets: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    port: int | None = None
    stop_timeout: int | None = None
    # The container health check: a command the image can run (exit 0 = healthy).
    health_check: HealthCheck | None = None

    def __post_init__(self) -> None:
        leaked = SECRET_ENV_NAMES & self.environment.keys()
        if leaked:
            raise ValueError(f"{sorted(leaked)} must be passed as ECS secrets, not environment")


@dataclass(frozen=True)
class HealthCheck:
    """An ECS container health check: `command` in exec form, run inside the container."""

    command: tuple[str, ...]
    interval: int = 30
    timeout: int = 10
    retries: int = 3
    start_period: int = 60

    def definition(self) -> dict[str, Any]:
        """The container definition's `healthCheck` block."""
        return {
            "command": ["CMD", *self.command],
            "interval": self.interval,
            "timeout": self.timeout,
            "retries": self.retries,
            "startPeriod": self.start_period,
        }


def http_health_check(port: int, path: str) -> HealthCheck:
    """GET `path` on the container's own port: the slim image has no curl, Python's stdlib is
    always there (the image's PATH puts the venv's python first)."""
    probe = (
        "import sys,urllib.request;"
        f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{port}{path}',timeout=3)"
        ".status==200 else 1)"
    )
    return HealthCheck(("python", "-c", probe), interval=15, timeout=5, start_period=20)


def role_health_check(role: str) -> HealthCheck:
    """`python -m service.healthcheck ROLE`: each process's own record is fresh and healthy
    (the worker's heartbeat, the metrics task's last publish; service/healthcheck.py)."""
    return HealthCheck(("python", "-m", "service.healthcheck", role))


def container_definitions(spec: ContainerSpec) -> pulumi.Output[str]:
    """The task definition's `container_definitions` JSON for one container."""
    container: dict[str, Any] = {
        "name": spec.name,
        "image": spec.image,
        "essential": True,
        # No shell or package manager is needed at runtime, and a read-only root file system
        # means a compromised process cannot persist anything.
        "readonlyRootFilesystem": True,
        # ...except a task-local scratch volume: job processors write temporary files.
        "mountPoints": [{"sourceVolume": SCRATCH_VOLUME, "containerPath": "/tmp"}],  # noqa: S108
        "environment": [{"name": k, "value": v} for k, v in sorted(spec.environment.items())],
        "secrets": [{"name": k, "valueFrom": v} for k, v in sorted(spec.secrets.items())],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": spec.log_group,
                "awslogs-region": spec.region,
                "awslogs-stream-prefix": spec.name,
            },
        },
        # An init process as PID 1 forwards SIGTERM to the CLI and reaps the worker processes.
        "linuxParameters": {"initProcessEnabled": True},
    }
    if spec.port is not None:
        container["portMappings"] = [{"containerPort": spec.port, "protocol": "tcp"}]
    if spec.stop_timeout is not None:
        # SIGTERM -> SIGKILL window; the worker's grace must fit in it (see WorkerServiceArgs).
        container["stopTimeout"] = spec.stop_timeout
    if spec.health_check is not None:
        container["healthCheck"] = spec.health_check.definition()
    return pulumi.Output.json_dumps([container])
