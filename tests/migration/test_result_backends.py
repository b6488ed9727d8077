"""taskiq-redis's RedisAsyncResultBackend on our broker: set by RESULT_BACKEND or in code, a
job's final result (value or error) lands where taskiq-redis keeps it, with its expiry and
taskiq's progress, while the job record keeps its own copy."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from taskiq import TaskiqDepends
from taskiq.depends.progress_tracker import ProgressTracker, TaskState
from taskiq_redis import RedisAsyncResultBackend

from service.jobs import load_job_types
from service.queue.queue import JobQueue
from service.queue.states import JobState
from service.settings import Settings
from service.worker.receiver import JobReceiver
from service.worker.result_backends import FinalResultBackend
from service.worker.taskiq_broker import JobQueueBroker
from tests.migration.migrated_tasks import runs_key

MODULES = "tests.migration.migrated_tasks"


@pytest.fixture
async def prefix(redis: Redis) -> AsyncIterator[str]:
    """The result keys' prefix; those keys are deleted afterwards."""
    value = "tq-res-" + uuid.uuid4().hex[:10]
    yield value
    async for key in redis.scan_iter(match=value + ":*", count=1000):
        await redis.delete(key)


@pytest.fixture
async def running(
    redis_url: str, queue: JobQueue, queue_name: str, prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[JobQueueBroker]:  # fmt: skip
    """A worker broker configured by settings alone, its receiver running in this loop."""
    monkeypatch.setenv("QUEUE_NAME", queue_name)
    settings = Settings(
        redis_url=redis_url, queue_name=queue_name, key_prefix="jqtest",
        result_backend="taskiq-redis", result_key_prefix=prefix, result_ex_time=60,
    )  # fmt: skip
    broker = JobQueueBroker(settings, registry=load_job_types((MODULES,)))
    broker.is_worker_process = True

    @broker.task(task_name="tracked")
    async def tracked(
        progress: ProgressTracker[dict[str, int]] = TaskiqDepends(),  # noqa: B008 - taskiq's DI
    ) -> str:
        await progress.set_progress(TaskState.STARTED, {"done": 1})
        return "tracked"

    finish = asyncio.Event()
    listening = asyncio.create_task(JobReceiver(broker).listen(finish))
    try:
        yield broker
    finally:
        finish.set()
        await asyncio.wait([listening], timeout=30)
        await broker.shutdown()


def echo(broker: JobQueueBroker) -> Any:
    task = broker.find_task("migrated-echo")
    assert task is not None
    return task


async def test_result_reaches_taskiq_redis_and_the_job_record(
    running: JobQueueBroker, redis_url: str, queue: JobQueue, prefix: str
) -> None:
    assert isinstance(running.result_backend, FinalResultBackend)
    task = await echo(running).kiq(data={"n": 21})
    result = await task.wait_result(timeout=10)
    assert (result.is_err, result.return_value) == (False, {"n": 21, "double": 42})
    reader: RedisAsyncResultBackend[Any] = RedisAsyncResultBackend(redis_url, prefix_str=prefix)
    stored = await reader.get_result(task.task_id)  # a taskiq-redis app reading it its own way
    await reader.shutdown()
    assert stored.return_value == {"n": 21, "double": 42}
    job = await queue.get(task.task_id)
    assert (job.state, job.result) == (JobState.COMPLETED, {"n": 21, "double": 42})


async def test_a_retried_attempt_writes_no_result_and_the_last_failure_does(
    running: JobQueueBroker, redis: Redis, queue: JobQueue, queue_name: str
) -> None:
    recovers = await echo(running).kiq(data={"n": 1, "fail_first": 1})
    fails = await echo(running).kiq(data={"n": 2, "fail_first": 9})
    recovered = await recovers.wait_result(timeout=20)
    failed = await fails.wait_result(timeout=20)
    assert (recovered.is_err, recovered.return_value) == (False, {"n": 1, "double": 2})
    assert failed.is_err and "attempt 3 fails on purpose" in str(failed.error)
    runs = await redis.hgetall(runs_key(queue_name))
    assert runs == {recovers.task_id: "2", fails.task_id: "3"}
    assert (await queue.get(fails.task_id)).state is JobState.FAILED


async def test_results_expire_after_result_ex_time(
    running: JobQueueBroker, redis: Redis, prefix: str
) -> None:
    task = await echo(running).kiq(data={"n": 3})
    await task.wait_result(timeout=10)
    assert 0 < await redis.ttl(f"{prefix}:{task.task_id}") <= 60


async def test_taskiq_progress_is_kept_by_the_backend(running: JobQueueBroker) -> None:
    tracked = running.find_task("tracked")
    assert tracked is not None
    task = await tracked.kiq()
    assert (await task.wait_result(timeout=10)).return_value == "tracked"
    progress = await task.get_progress()
    assert progress is not None
    assert (progress.state, progress.meta) == (TaskState.STARTED, {"done": 1})


async def test_a_backend_set_in_code_gets_final_results_only(
    redis_url: str, queue_name: str, prefix: str
) -> None:
    settings = Settings(redis_url=redis_url, queue_name=queue_name, key_prefix="jqtest")
    broker = JobQueueBroker(settings)
    backend: RedisAsyncResultBackend[Any] = RedisAsyncResultBackend(redis_url, prefix_str=prefix)
    assert broker.with_result_backend(backend) is broker
    assert isinstance(broker.result_backend, FinalResultBackend)
    assert broker.result_backend.inner is backend
