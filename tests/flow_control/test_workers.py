"""Flow control with real worker processes on a real Redis: pause and resume (a type and the
whole queue), a global rate limit across 4 processes with no head-of-line blocking of another
type, and a global concurrency limit across processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.queue.flow_control import FlowControl, RateLimit
from service.queue.models import JobSpec
from service.queue.queue import JobQueue
from service.queue.states import JobState
from tests.support.workers import PROBE, all_done, running_worker, wait_until, worker_env

pytestmark = pytest.mark.slow


async def _enqueue(queue: JobQueue, job_type: str, n: int, **data: object) -> list[str]:
    results = await queue.enqueue_many([JobSpec(type=job_type, data=dict(data))] * n)
    return [r.job.id for r in results]


async def _times(queue: JobQueue, ids: list[str], field: str) -> list[int]:
    pipe = queue.redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(queue.keys.job(job_id), field)
    return [int(value) for value in await pipe.execute()]


async def _handed_out(queue: JobQueue, ids: list[str]) -> list[int]:
    """When `dequeue` gave each job to a worker: what a rate limit counts (docs/queue.md
    "Flow control"). Its `started` is later, when its code began, after any prefetch wait."""
    return [
        round(
            next(
                entry.at.timestamp() * 1000
                for entry in job.timeline
                if entry.state is JobState.PROCESSING
            )
        )
        for job in await queue.get_many(ids)
    ]


async def _states(queue: JobQueue, ids: list[str]) -> set[JobState]:
    return {job.state for job in await queue.get_many(ids)}


async def test_paused_type_starts_nothing_for_10_s_then_drains_after_resume(
    redis_url: str, queue_name: str, queue: JobQueue, tmp_path: Path
) -> None:
    flow = FlowControl(queue)
    await flow.pause_lane("noop")
    held = await _enqueue(queue, "noop", 50)
    others = await _enqueue(queue, "probe", 10)
    env = worker_env(redis_url, queue_name, worker_count=2, **PROBE)
    with running_worker(env, tmp_path / "worker.log"):
        await wait_until(lambda: all_done(queue, others), timeout=30)
        await asyncio.sleep(10)
        assert await _states(queue, held) == {JobState.PENDING}
        await flow.resume_lane("noop")
        await wait_until(lambda: all_done(queue, held), timeout=30)
    assert await _states(queue, held) == {JobState.COMPLETED}


async def test_paused_queue_starts_nothing_for_10_s_then_drains_after_resume(
    redis_url: str, queue_name: str, queue: JobQueue, tmp_path: Path
) -> None:
    flow = FlowControl(queue)
    await flow.pause_queue()
    held = await _enqueue(queue, "noop", 20) + await _enqueue(queue, "probe", 5)
    env = worker_env(redis_url, queue_name, worker_count=2, **PROBE)
    with running_worker(env, tmp_path / "worker.log"):
        await asyncio.sleep(10)
        assert await _states(queue, held) == {JobState.PENDING}
        await flow.resume_queue()
        await wait_until(lambda: all_done(queue, held), timeout=30)
    assert await _states(queue, held) == {JobState.COMPLETED}


@pytest.mark.timeout(300)
async def test_rate_limit_holds_across_4_processes_and_does_not_block_other_types(
    redis_url: str, queue_name: str, queue: JobQueue, tmp_path: Path
) -> None:
    await FlowControl(queue).set_rate("noop", RateLimit(limit=10, per_seconds=1))
    limited = await _enqueue(queue, "noop", 1000)
    free = await _enqueue(queue, "probe", 100)  # behind the whole limited backlog
    env = worker_env(redis_url, queue_name, worker_count=4, **PROBE)
    with running_worker(env, tmp_path / "worker.log"):
        await wait_until(lambda: all_done(queue, free), timeout=60)
        # The free type finished while most of the limited backlog still waits.
        assert len([s for s in await queue.get_many(limited) if s.state is JobState.PENDING]) > 500
        await wait_until(lambda: all_done(queue, limited), timeout=200, interval=1)
    starts = sorted(await _handed_out(queue, limited))
    # Sliding window over the hand-outs: any 11 consecutive ones span >= 1 s.
    for first, eleventh in zip(starts, starts[10:], strict=False):
        assert eleventh - first >= 1000, (first, eleventh)


async def test_concurrency_limit_holds_across_processes(
    redis_url: str, queue_name: str, queue: JobQueue, tmp_path: Path
) -> None:
    await FlowControl(queue).set_concurrency("noop", 2)
    ids = await _enqueue(queue, "noop", 16, sleep_seconds=0.3)
    env = worker_env(redis_url, queue_name, worker_count=3, **PROBE)
    with running_worker(env, tmp_path / "worker.log"):
        await wait_until(lambda: all_done(queue, ids), timeout=60)
    started = await _times(queue, ids, "started")
    finished = await _times(queue, ids, "finished")
    events = sorted([(t, 1) for t in started] + [(t, -1) for t in finished])
    running, most = 0, 0
    for _, delta in events:
        running += delta
        most = max(most, running)
    assert most <= 2
    assert await _states(queue, ids) == {JobState.COMPLETED}
