"""Issue 19: a worker with room always takes the next job, whatever order its events land in.

A relay in front of Redis answers every `dequeue` late (the server runs it at once; only the
reply is held back, as a busy network or a busy event loop would). While a take that finds
nothing is on its way back, the worker's running jobs end and their finishes land. Each of
those events must still wake the dispatcher afterwards; one that is lost leaves a worker with
every slot free, jobs pending, and nothing that will ever wake it (the stall the issue
reports). The stall detector is set out of reach here, so only the wake-ups can make these pass.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service import healthcheck
from service.queue.models import JobSpec
from service.queue.queue import JobQueue
from service.queue.states import JobState
from tests.support.relay import SlowingRelay, script_sha
from tests.support.state import assert_consistent
from tests.support.workers import PROBE, running_worker, wait_until, worker_env

pytestmark = pytest.mark.slow

DEQUEUE_REPLY_DELAY_SECONDS = 0.3
BURSTS = 4
BURST_EVERY_SECONDS = 0.5
DRAIN_SECONDS = 30  # the fixed worker drains each case in a few seconds, even on a busy machine


def probes(count: int) -> list[JobSpec]:
    return [JobSpec(type="probe", data={"seconds": 0})] * count


async def _completed(redis: Redis, queue: JobQueue, expected: int) -> bool:
    return int(await redis.zcard(queue.keys.completed)) >= expected


async def _state_of(redis: Redis, queue: JobQueue) -> str:
    k = queue.keys
    sets = {"pending": k.pending, "active": k.active, "completed": k.completed}
    counts = {name: int(await redis.zcard(key)) for name, key in sets.items()}
    workers = [await redis.hgetall(k.worker(w)) for w in await redis.zrange(k.workers, 0, -1)]
    return f"{counts}; workers {workers}"


async def _registered(redis: Redis, queue: JobQueue) -> bool:
    return int(await redis.zcard(queue.keys.workers)) > 0


async def _bursts(queue: JobQueue, size: int) -> list[str]:
    """`size` jobs at once, every BURST_EVERY_SECONDS: as many as the worker runs at a time, so
    each burst fills every slot and the take behind it finds nothing."""
    ids = []
    for _ in range(BURSTS):
        ids += [r.job.id for r in await queue.enqueue_many(probes(size))]
        await asyncio.sleep(BURST_EVERY_SECONDS)
    return ids


async def _drain(redis: Redis, queue: JobQueue, count: int) -> None:
    try:
        await wait_until(
            lambda: _completed(redis, queue, count), timeout=DRAIN_SECONDS, interval=0.2
        )
    except AssertionError as stalled:
        raise AssertionError(
            f"queue stopped draining: {await _state_of(redis, queue)}"
        ) from stalled


@pytest.mark.parametrize("arrival", ["backlog", "steady"])
@pytest.mark.parametrize("concurrency", [1, 2, 10])
async def test_the_queue_drains_whatever_order_wake_ups_land_in(
    queue: JobQueue,
    redis: Redis,
    redis_url: str,
    tmp_path: Path,
    concurrency: int,
    arrival: str,
) -> None:
    relay = SlowingRelay(redis_url, script_sha("dequeue"), DEQUEUE_REPLY_DELAY_SECONDS)
    env = worker_env(
        relay.start(),
        queue.keys.queue,
        worker_concurrency=concurrency,
        worker_stall_seconds=3600,
        health_dir=tmp_path / "health",
        **PROBE,
    )
    ids: list[str] = []
    if arrival == "backlog":  # waiting before the worker starts
        ids = [r.job.id for r in await queue.enqueue_many(probes(3 * concurrency + 4))]
    try:
        with running_worker(env, tmp_path / "w.log"):
            await wait_until(lambda: _registered(redis, queue), timeout=20)
            # A backlog can only stall at its very end, which shows once more work comes.
            await _drain(redis, queue, len(ids))
            ids += await _bursts(queue, concurrency)
            await _drain(redis, queue, len(ids))
            # What ECS's container check reads: the worker process says it is taking jobs.
            assert healthcheck.check("worker", tmp_path / "health") == (
                True,
                "1 worker process(es) healthy",
            )
    finally:
        relay.stop()
    assert relay.held_back > 0  # takes really were slow
    jobs = await queue.get_many(ids)
    assert {job.state for job in jobs} == {JobState.COMPLETED}
    assert {job.attempts_made for job in jobs} == {1}
    assert {len(await queue.logs(job_id)) for job_id in ids} == {1}  # each ran exactly once
    await assert_consistent(redis, queue.keys)
