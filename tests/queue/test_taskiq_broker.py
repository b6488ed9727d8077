"""The queue is a taskiq broker: `.kiq()` with labels, `taskiq worker`, and `wait_result`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.jobs import load_job_types
from service.queue.options import JobOptions
from service.queue.queue import JobQueue
from service.queue.states import JobState, Priority
from service.settings import Settings
from service.worker.taskiq_broker import JobQueueBroker
from tests.support.workers import REPO, kill_group, worker_env

pytestmark = pytest.mark.slow


async def test_kiq_labels_become_job_options_and_taskiq_worker_runs_it(
    queue: JobQueue, redis_url: str, tmp_path: Path
) -> None:
    settings = Settings(redis_url=redis_url, queue_name=queue.keys.queue, key_prefix="jqtest")
    broker = JobQueueBroker(settings, registry=load_job_types())
    await broker.startup()
    try:
        noop = broker.find_task("noop")
        assert noop is not None
        task = await (
            noop.kicker()
            .with_labels(priority="critical", attempts=4, delay=0)
            .kiq(data={"progress_steps": 2})
        )
        job = await queue.get(task.task_id)
        assert (job.priority, job.max_attempts, job.state) == (
            Priority.CRITICAL,
            4,
            JobState.PENDING,
        )
        with (tmp_path / "w.log").open("wb") as log:
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "taskiq",
                    "worker",
                    "service.worker:broker",
                    "--workers",
                    "1",
                ],
                env=worker_env(redis_url, queue.keys.queue),
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            result = await task.wait_result(timeout=30)
        finally:
            kill_group(worker)
        assert not result.is_err
        assert result.return_value == {"attempt": 1, "slept_seconds": 0.0}
    finally:
        await broker.shutdown()


@pytest.mark.parametrize(
    "labels",
    [
        {"dedupe_key": "nightly", "dedupe_mode": "throttle", "dedupe_ttl": 60},
        {"dedupe": '{"key": "nightly", "mode": "until_done"}'},
    ],
    ids=["key-mode-ttl-labels", "json-label"],
)
async def test_kiq_dedupe_labels_deduplicate_like_the_api(
    queue: JobQueue, redis_url: str, labels: dict[str, object]
) -> None:
    settings = Settings(redis_url=redis_url, queue_name=queue.keys.queue, key_prefix="jqtest")
    broker = JobQueueBroker(settings, registry=load_job_types())
    await broker.startup()
    try:
        noop = broker.find_task("noop")
        assert noop is not None
        kicker = noop.kicker().with_labels(**labels)
        first = await kicker.kiq(data={})
        second = await kicker.kiq(data={})
        dedupe_key = queue.keys.dedupe_prefix + "nightly"
        assert await queue.redis.get(dedupe_key) == first.task_id
        assert await queue.redis.zrange(queue.keys.pending, 0, -1) == [first.task_id]
        assert not await queue.redis.exists(queue.keys.job(second.task_id))
        ttl_ms = await queue.redis.pttl(dedupe_key)
        assert (0 < ttl_ms <= 60_000) if "dedupe_ttl" in labels else ttl_ms == -1
    finally:
        await broker.shutdown()


def test_bad_dedupe_labels_are_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="ttl_seconds"):
        JobOptions.from_labels({"dedupe_key": "k", "dedupe_mode": "throttle", "dedupe_ttl": 0})
    with pytest.raises(ValidationError, match="mode"):
        JobOptions.from_labels({"dedupe": {"key": "k", "mode": "sometimes", "ttl_seconds": 5}})
