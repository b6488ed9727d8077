"""The worker: the broker every process shares, and the command that starts worker processes.

`taskiq worker service.worker:broker` works as with any taskiq broker; `jobqueue worker` starts
WORKER_COUNT processes through taskiq's process manager with our settings applied.
"""

from __future__ import annotations

import logging

from taskiq.cli.common_args import LogLevel
from taskiq.cli.worker.args import WorkerArgs
from taskiq.cli.worker.run import run_worker

from service.ecs_protection import TaskProtection
from service.jobs import load_job_types
from service.settings import Settings, get_settings
from service.worker.taskiq_broker import JobQueueBroker

# After the grace, taskiq gives the broker this long to hand jobs back and disconnect.
BROKER_SHUTDOWN_SECONDS = 10.0
# Batch delivery from our runtime instead of taskiq's one-message-at-a-time prefetcher.
RECEIVER = "service.worker.receiver:JobReceiver"
# taskiq's receiver logs every job start at INFO: thousands of lines a second on a busy worker,
# each billed by CloudWatch Logs, saying what the job's own timeline already records.
PER_JOB_LOGGERS = ("taskiq.receiver.receiver",)


def _make_broker() -> JobQueueBroker:
    settings = get_settings()
    return JobQueueBroker(
        settings,
        protection=TaskProtection(),
        registry=load_job_types(settings.extra_job_modules),
    )


broker = _make_broker()


def worker_args(settings: Settings) -> WorkerArgs:
    """taskiq worker arguments for our settings."""
    return WorkerArgs(
        broker="service.worker:broker",
        receiver=RECEIVER,
        modules=[],
        workers=settings.worker_count,
        max_async_tasks=settings.worker_concurrency,
        shutdown_timeout=BROKER_SHUTDOWN_SECONDS,
        wait_tasks_timeout=settings.shutdown_grace_seconds,
        configure_logging=True,
        log_level=LogLevel.INFO,
    )


def run_workers(settings: Settings | None = None) -> int:
    """Run WORKER_COUNT worker processes until SIGTERM/SIGINT; returns the exit status."""
    settings = settings or get_settings()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for name in PER_JOB_LOGGERS:  # set before taskiq forks the worker processes, which inherit it
        logging.getLogger(name).setLevel(logging.WARNING)
    status = run_worker(worker_args(settings))
    return int(status or 0)
