"""Issue 19's defense in depth: a worker that could take jobs but does not notices, says so,
and heals; one that cannot heal fails its container health check.

The wake-up is broken on purpose (the runtime's one wake-up call made a no-op), so after each
job the dispatcher waits on a signal that never comes: only the stall detector can get the
queue moving again.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from service import healthcheck
from service.queue.models import JobSpec
from service.queue.queue import JobQueue
from service.queue.states import JobState
from service.settings import Settings
from service.worker.receiver import JobReceiver
from service.worker.runtime import WorkerRuntime
from service.worker.stalls import UNHEALTHY_AFTER_STALLED_HEARTBEATS
from service.worker.taskiq_broker import JobQueueBroker

STALL_SECONDS = 1.0


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.fixture
async def stalling_worker(
    redis_url: str, queue: JobQueue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[JobQueueBroker, WorkerRuntime]]:
    """A worker (concurrency 1, no prefetch) whose wake-up after a job is broken, so every job
    after the first needs the detector."""
    monkeypatch.setenv(healthcheck.HEALTH_DIR_ENV, str(tmp_path))
    settings = Settings(
        redis_url=redis_url,
        queue_name=queue.keys.queue,
        key_prefix="jqtest",
        worker_concurrency=1,
        worker_prefetch=0,
        heartbeat_seconds=0.2,
        heartbeat_ttl_seconds=5,
        lease_seconds=1.5,  # the lease keeper writes the health record every renewal (0.5 s)
        worker_stall_seconds=STALL_SECONDS,
    )
    broker = JobQueueBroker(settings)
    broker.is_worker_process = True

    @broker.task(task_name="quick")
    async def quick(data: dict[str, Any]) -> None:
        await asyncio.sleep(0)

    await broker.startup()
    runtime = broker.runtime
    assert runtime is not None
    monkeypatch.setattr(runtime, "room_may_have_freed", lambda: None)
    finish = asyncio.Event()
    listening = asyncio.create_task(
        JobReceiver(broker, max_async_tasks=10, run_startup=False).listen(finish)
    )
    try:
        yield broker, runtime
    finally:
        monkeypatch.undo()  # shutdown wakes the dispatcher through the same wake-up
        finish.set()
        await asyncio.wait_for(listening, 30)
        await broker.shutdown()


async def test_a_stalled_worker_is_noticed_warned_about_counted_and_healed(
    stalling_worker: tuple[JobQueueBroker, WorkerRuntime],
    queue: JobQueue,
    redis: Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, runtime = stalling_worker
    caplog.set_level(logging.WARNING, logger="service.worker.stalls")
    ids = [r.job.id for r in await queue.enqueue_many([JobSpec(type="quick")] * 3)]

    async def all_completed() -> bool:
        return {job.state for job in await queue.get_many(ids)} == {JobState.COMPLETED}

    await until(all_completed)
    stalls = runtime.stall_detector.stalls
    assert stalls >= 1  # the first job ran at once; the others waited on the broken wake-up
    warnings = [r for r in caplog.records if "worker stalled" in r.getMessage()]
    assert len(warnings) == stalls  # one warning per stall, however many heartbeats it lasted
    assert "held 0, ending 0, buffered 0, room 1, free slots 1" in warnings[0].getMessage()

    async def registry_counts_them() -> bool:
        [worker] = await queue.workers()
        return worker.stalls == stalls and not worker.stalled

    await until(registry_counts_them)  # the heartbeat after the heal: counted, not stalled
    healthy, why = healthcheck.check("worker")
    assert healthy, why  # every stall healed at the first restart


async def test_a_stall_that_does_not_heal_fails_the_health_check_until_it_does(
    stalling_worker: tuple[JobQueueBroker, WorkerRuntime],
    queue: JobQueue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, runtime = stalling_worker
    assert runtime.dispatcher is not None
    restart = runtime.dispatcher.restart
    monkeypatch.setattr(runtime.dispatcher, "restart", lambda: None)
    ids = [r.job.id for r in await queue.enqueue_many([JobSpec(type="quick")] * 2)]

    async def unhealthy() -> bool:
        return not healthcheck.check("worker")[0]

    await until(unhealthy)
    _, why = healthcheck.check("worker")
    # Written at each renewal, the record says how many heartbeats in a row found the stall:
    # never fewer than the threshold (a first stall that a restart heals is not a failure).
    in_a_row = re.search(r"stalled for (\d+) heartbeat\(s\) in a row", why)
    assert in_a_row, why
    assert int(in_a_row[1]) >= UNHEALTHY_AFTER_STALLED_HEARTBEATS
    [worker] = await queue.workers()
    assert worker.stalled and worker.stalls == 1  # one stall, still going
    monkeypatch.setattr(runtime.dispatcher, "restart", restart)  # now it can heal

    async def all_completed() -> bool:
        return {job.state for job in await queue.get_many(ids)} == {JobState.COMPLETED}

    await until(all_completed)

    async def healthy_again() -> bool:
        return healthcheck.check("worker")[0]

    await until(healthy_again)
