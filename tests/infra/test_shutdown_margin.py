"""The shutdown margin, stated once (service.settings.HANDBACK_MARGIN_SECONDS): the worker's own
shutdown path fits in it, and the infra's stopTimeout leaves it after every grace it accepts."""

from __future__ import annotations

import pytest
from pulumi_harness import ProgramRun, dev_config, run_program

from infra.components.containers import ContainerSpec
from infra.components.fargate_service import FargateTask, TaskSize
from infra.components.metrics import QueueMetrics
from infra.components.workers import WorkerServiceArgs
from infra.config import (
    MAX_SHUTDOWN_GRACE_SECONDS,
    WORKER_STOP_TIMEOUT_SECONDS,
    ConfigError,
    read_stack_settings,
)
from infra.scaling import ScalingPlan
from service.settings import FARGATE_MAX_STOP_TIMEOUT_SECONDS, HANDBACK_MARGIN_SECONDS, Settings
from service.worker import BROKER_SHUTDOWN_SECONDS, worker_args
from service.worker.receiver import HARD_EXIT_AFTER_GRACE_SECONDS


def _stop_and_grace(run: ProgramRun) -> tuple[float, float]:
    container = run.container("worker")
    env = {e["name"]: e["value"] for e in container["environment"]}
    return container["stopTimeout"], float(env["SHUTDOWN_GRACE_SECONDS"])


def test_the_workers_shutdown_after_the_grace_fits_in_the_margin() -> None:
    """After the grace a worker either hands back through taskiq's broker shutdown or, when a
    job holds its event loop, through the hard exit; taken one after the other (the worst
    case), they still end inside the margin, with time left for the process to exit."""
    settings = Settings(_env_file=None, shutdown_grace_seconds=42)
    args = worker_args(settings)
    assert args.wait_tasks_timeout == settings.shutdown_grace_seconds
    assert args.shutdown_timeout == BROKER_SHUTDOWN_SECONDS
    assert HARD_EXIT_AFTER_GRACE_SECONDS + BROKER_SHUTDOWN_SECONDS < HANDBACK_MARGIN_SECONDS


@pytest.mark.parametrize("stack", ["dev", "prod", "fresh"])
def test_every_stack_leaves_the_margin_after_its_grace(
    stack: str, dev_run: ProgramRun, prod_run: ProgramRun, fresh_run: ProgramRun
) -> None:
    run = {"dev": dev_run, "prod": prod_run, "fresh": fresh_run}[stack]
    stop, grace = _stop_and_grace(run)
    assert stop == WORKER_STOP_TIMEOUT_SECONDS == FARGATE_MAX_STOP_TIMEOUT_SECONDS
    assert stop - grace >= HANDBACK_MARGIN_SECONDS


def test_the_longest_grace_the_config_accepts_still_leaves_the_margin() -> None:
    assert MAX_SHUTDOWN_GRACE_SECONDS == FARGATE_MAX_STOP_TIMEOUT_SECONDS - HANDBACK_MARGIN_SECONDS
    run = run_program(
        {**dev_config(), "jobqueue:shutdownGraceSeconds": str(MAX_SHUTDOWN_GRACE_SECONDS)},
        stack="longgrace",
    )
    stop, grace = _stop_and_grace(run)
    assert grace == MAX_SHUTDOWN_GRACE_SECONDS
    assert stop - grace == HANDBACK_MARGIN_SECONDS
    longer = {"jobqueue:shutdownGraceSeconds": str(MAX_SHUTDOWN_GRACE_SECONDS + 0.5)}
    with pytest.raises(ConfigError, match="shutdownGraceSeconds"):
        read_stack_settings(longer, "longgrace", "us-east-1")


def _worker_args(grace: float, stop_timeout: int) -> WorkerServiceArgs:
    container = ContainerSpec(
        name="worker", image="img", region="us-east-1", log_group="logs", stop_timeout=stop_timeout
    )
    task = FargateTask("cluster", [], "sg", container, TaskSize(512, 1024), "exec", "task")
    return WorkerServiceArgs(
        task=task,
        cluster_name="cluster",
        scaling=ScalingPlan(
            1, 2, acceptable_wait_seconds=60, task_jobs_per_second=1, slots_per_task=10
        ),
        metrics=QueueMetrics(queue="default", environment="dev"),
        shutdown_grace_seconds=grace,
        alarm_topic_arn="topic",
    )


def test_the_worker_service_refuses_a_grace_that_eats_into_the_margin() -> None:
    """The component checks its own container's stopTimeout, whatever the config allowed."""
    _worker_args(grace=45, stop_timeout=60)
    with pytest.raises(ValueError, match="ECS kills the task at stopTimeout"):
        _worker_args(grace=45.5, stop_timeout=60)


def test_the_service_accepts_the_longest_grace_the_infra_does_and_no_longer() -> None:
    """The service's own check and the stack's bound are the same number, so a grace a stack
    accepts never stops the worker at start-up, and one the stack refuses is refused too."""
    prod = {"_env_file": None, "environment": "prod", "api_keys": "k" * 40}
    Settings(**prod, shutdown_grace_seconds=MAX_SHUTDOWN_GRACE_SECONDS)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="SHUTDOWN_GRACE_SECONDS must be at most 105 s"):
        Settings(**prod, shutdown_grace_seconds=MAX_SHUTDOWN_GRACE_SECONDS + 1)  # type: ignore[arg-type]
