"""Fair-share groups with real worker processes on a real Redis (docs/queue.md "Groups"): the
issue's fairness bound through real dequeues of a worker fleet, and a group's concurrency and
running count kept right across a SIGKILLed worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.queue.groups import Groups
from service.queue.models import JobSpec
from service.queue.queue import JobQueue
from service.queue.states import JobState
from tests.support.state import assert_no_leaked_keys
from tests.support.workers import (
    PROBE,
    all_done,
    kill_group,
    running_worker,
    start_worker,
    wait_until,
    worker_env,
)

pytestmark = pytest.mark.slow


async def _enqueue(queue: JobQueue, group: str, n: int, **data: object) -> list[str]:
    ids: list[str] = []
    for start in range(0, n, 1000):
        batch = [JobSpec(type="noop", group=group, data=dict(data))] * min(1000, n - start)
        ids += [r.job.id for r in await queue.enqueue_many(batch)]
    return ids


async def _started(queue: JobQueue, ids: list[str]) -> dict[str, int]:
    pipe = queue.redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(queue.keys.job(job_id), "started")
    return {job_id: int(v) for job_id, v in zip(ids, await pipe.execute(), strict=True) if v}


@pytest.mark.timeout(300)
async def test_ten_jobs_enqueued_after_10000_of_another_group_start_within_the_first_40(
    redis_url: str, queue_name: str, queue: JobQueue, tmp_path: Path
) -> None:
    big = await _enqueue(queue, "tenant-a", 10_000)
    small = await _enqueue(queue, "tenant-b", 10)
    env = worker_env(redis_url, queue_name, worker_count=2, **PROBE)
    with running_worker(env, tmp_path / "worker.log"):
        await wait_until(lambda: all_done(queue, small), timeout=120)
    started_small = await _started(queue, small)
    last_small = max(started_small.values())
    # Start times come from the dequeue script on the server's clock; jobs taken in one call
    # share one, so "strictly before" counts only starts that surely came first.
    before = [t for t in (await _started(queue, big)).values() if t < last_small]
    assert len(before) + len(small) <= 40, f"{len(before)} of tenant-a started first"
    assert len(started_small) == 10


@pytest.mark.timeout(120)
async def test_a_killed_worker_frees_its_groups_slots_once_its_leases_expire(
    redis_url: str, queue_name: str, queue: JobQueue, tmp_path: Path
) -> None:
    groups = Groups(queue)
    await groups.set_concurrency("tenant-a", 2)
    ids = await _enqueue(queue, "tenant-a", 6, sleep_seconds=30)
    env = worker_env(
        redis_url, queue_name, worker_count=1, lease_seconds=2, sweep_interval_seconds=0.5, **PROBE
    )
    first = start_worker(env, tmp_path / "first.log")
    try:

        async def two_running() -> bool:
            return (await groups.get("tenant-a")).running == 2

        await wait_until(two_running, timeout=30)
    finally:
        kill_group(first)  # SIGKILL: its two jobs keep their leases until they expire
    assert (await groups.get("tenant-a")).running == 2
    with running_worker(env, tmp_path / "second.log"):

        async def handed_on() -> bool:
            jobs = await queue.get_many(ids)
            stalled = [job for job in jobs if job.stalls >= 1]
            return len(stalled) == 2 and (await groups.get("tenant-a")).running == 2

        # The sweeper returns the dead worker's two jobs; the second worker takes two again,
        # never more than the group's concurrency.
        await wait_until(handed_on, timeout=60)
        assert (await groups.get("tenant-a")).running == 2
        for job_id in ids:
            await queue.cancel(job_id)
    info = await groups.get("tenant-a")
    assert (info.pending, info.running) == (0, 0)
    assert {job.state for job in await queue.get_many(ids)} == {JobState.CANCELLED}
    await groups.set_concurrency("tenant-a", None)
    await assert_no_leaked_keys(queue.redis, queue.keys)
