"""Issue 12.3 (the worker's half): a job whose code holds its event loop longer than a lease
loses no lease, neither its own nor its neighbours', and SIGTERM stays prompt.

Real worker processes: the one running the hog, and a second one that would take any job whose
lease lapsed (it runs the sweeper, and it has room). Leases are 2 s and the hog holds its loop
for 6 s, so a renewal that needs the loop would let all three jobs go to the second worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service import healthcheck
from service.queue.models import JobSpec
from service.queue.queue import JobQueue
from service.queue.states import JobState
from tests.support.state import assert_consistent
from tests.support.workers import (
    PROBE,
    all_done,
    kill_group,
    running_worker,
    start_worker,
    stop_worker,
    wait_until,
    worker_env,
)

pytestmark = pytest.mark.slow

LEASE_SECONDS = 2
HOG_SECONDS = 6


def job(kind: str, seconds: float) -> JobSpec:
    return JobSpec(type=kind, data={"seconds": seconds})


async def _running(queue: JobQueue, ids: list[str]) -> bool:
    return all([await queue.logs(job_id) for job_id in ids])


@contextlib.contextmanager
def health_verdicts(folder: Path) -> Iterator[list[tuple[bool, str]]]:
    """What `python -m service.healthcheck worker` would answer, read every 0.2 s meanwhile."""
    verdicts: list[tuple[bool, str]] = []

    async def watch() -> None:
        while True:
            verdicts.append(healthcheck.check("worker", folder))
            await asyncio.sleep(0.2)

    watching = asyncio.get_running_loop().create_task(watch())
    try:
        yield verdicts
    finally:
        watching.cancel()


async def test_a_job_hogging_its_loop_keeps_every_lease_of_its_process(
    queue: JobQueue, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    health = tmp_path / "health"
    env = worker_env(
        redis_url,
        queue.keys.queue,
        lease_seconds=LEASE_SECONDS,
        worker_concurrency=3,
        health_dir=health,
        **PROBE,
    )
    hogging = [job("hog", HOG_SECONDS)]
    neighbours = [job("probe", HOG_SECONDS - 1)] * 2  # they end only once the hog lets go
    ids = [r.job.id for r in await queue.enqueue_many(hogging + neighbours)]
    with running_worker(env, tmp_path / "hogged.log"):
        await wait_until(lambda: _running(queue, ids), timeout=20)
        # A second worker, with room, that would run any job whose lease lapsed.
        with running_worker(env, tmp_path / "spare.log"), health_verdicts(health) as verdicts:
            await wait_until(lambda: all_done(queue, ids), timeout=40)
    # The container stays healthy while the hog holds the loop (its record is written by the
    # lease keeper's thread), so ECS does not replace it and run the job again.
    assert verdicts
    assert [why for healthy, why in verdicts if not healthy] == []
    jobs = await queue.get_many(ids)
    assert {job.state for job in jobs} == {JobState.COMPLETED}
    assert {(job.attempts_made, job.stalls) for job in jobs} == {(1, 0)}
    assert {len(await queue.logs(job_id)) for job_id in ids} == {1}  # none started twice
    assert len({job.worker_id for job in jobs}) == 1
    await assert_consistent(redis, queue.keys)


async def test_sigterm_is_prompt_while_a_job_hogs_the_loop(
    queue: JobQueue, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    grace = 2
    env = worker_env(
        redis_url, queue.keys.queue, shutdown_grace_seconds=grace, lease_seconds=5, **PROBE
    )
    hog_id = (await queue.enqueue(job("hog", 120))).job.id
    worker = start_worker(env, tmp_path / "w.log")
    try:
        await wait_until(lambda: _running(queue, [hog_id]), timeout=20)
        took = stop_worker(worker, timeout=30)
    finally:
        kill_group(worker)
    # The grace, then a few seconds for the hand-back, though the hog would hold on for 2 min.
    assert took < grace + 10, (tmp_path / "w.log").read_text()
    print(f"\nSIGTERM with a job holding the loop: exited {took:.1f} s later (grace {grace} s)")
    hogged = await queue.get(hog_id)
    assert (hogged.state, hogged.attempts_made) == (JobState.PENDING, 0)
    assert hogged.timeline[-1].note == "released"  # handed back, not left to its lease
    assert await redis.zcard(queue.keys.workers) == 0
    await assert_consistent(redis, queue.keys)


async def test_a_loop_held_past_its_limit_fails_the_health_check_until_it_is_let_go(
    queue: JobQueue, redis_url: str, tmp_path: Path
) -> None:
    """Past WORKER_LOOP_HOLD_LIMIT_SECONDS the code is taken for wedged: the container's check
    fails (ECS replaces it), and passes again once the loop turns."""
    health = tmp_path / "health"
    env = worker_env(
        redis_url,
        queue.keys.queue,
        lease_seconds=LEASE_SECONDS,
        worker_loop_hold_limit_seconds=2,
        health_dir=health,
        **PROBE,
    )
    hog_id = (await queue.enqueue(job("hog", HOG_SECONDS))).job.id
    with running_worker(env, tmp_path / "w.log"), health_verdicts(health) as verdicts:
        await wait_until(lambda: _running(queue, [hog_id]), timeout=20)
        await wait_until(lambda: all_done(queue, [hog_id]), timeout=40)

        async def healthy_again() -> bool:
            return healthcheck.check("worker", health)[0]

        await wait_until(healthy_again, timeout=20)
    failures = [why for healthy, why in verdicts if not healthy and "pid" in why]
    assert any("held its event loop" in why for why in failures), verdicts
