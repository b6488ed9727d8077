"""The queue's guarantees with real worker processes: crashes, shutdowns, races, timing."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.queue.models import Backoff, JobSpec
from service.queue.queue import JobQueue
from service.queue.states import JobState
from tests.support.state import assert_consistent, assert_no_leaked_keys
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


def probe(seconds: float = 0, **kwargs: object) -> JobSpec:
    return JobSpec(type="probe", data={"seconds": seconds}, **kwargs)  # type: ignore[arg-type]


async def test_sigkilled_worker_loses_nothing(
    queue: JobQueue, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    ids = [r.job.id for r in await queue.enqueue_many([probe(30)] * 4)]
    env = worker_env(redis_url, queue.keys.queue, lease_seconds=2, worker_concurrency=4, **PROBE)
    doomed = start_worker(env, tmp_path / "doomed.log")
    try:
        await wait_until(lambda: _count(redis, queue.keys.active, 4), timeout=20)
    finally:
        kill_group(doomed)
    # Shorter jobs now, so the survivor can finish them; the ids and records are the same.
    for job_id in ids:
        await redis.hset(
            queue.keys.job(job_id),
            "msg",
            _message_with_seconds(await redis.hget(queue.keys.job(job_id), "msg"), 0),
        )
    killed_at = time.monotonic()
    with running_worker(env, tmp_path / "survivor.log"):
        await wait_until(lambda: all_done(queue, ids), timeout=20)
    recovered_in = time.monotonic() - killed_at
    jobs = await queue.get_many(ids)
    assert {job.state for job in jobs} == {JobState.COMPLETED}
    assert all(job.stalls == 1 for job in jobs)
    # lease (2 s) + sweep interval (0.5 s) + worker start-up: well within 20 s
    assert recovered_in < 15
    await assert_consistent(redis, queue.keys)


async def test_job_longer_than_its_lease_runs_exactly_once(
    queue: JobQueue, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    job = (await queue.enqueue(probe(4))).job
    env = worker_env(redis_url, queue.keys.queue, lease_seconds=1, worker_count=2, **PROBE)
    with running_worker(env, tmp_path / "w.log"):
        await wait_until(lambda: all_done(queue, [job.id]), timeout=30)
    done = await queue.get(job.id)
    assert done.state is JobState.COMPLETED
    assert (done.attempts_made, done.stalls) == (1, 0)
    assert len(await queue.logs(job.id)) == 1


async def test_sigterm_hands_back_unfinished_jobs_and_exits(
    queue: JobQueue, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    ids = [r.job.id for r in await queue.enqueue_many([probe(60)] * 3)]
    env = worker_env(redis_url, queue.keys.queue, shutdown_grace_seconds=1, **PROBE)
    worker = start_worker(env, tmp_path / "w.log")
    try:
        await wait_until(lambda: _count(redis, queue.keys.active, 3), timeout=20)
        took = stop_worker(worker, timeout=20)
    finally:
        kill_group(worker)
    assert took < 10, (tmp_path / "w.log").read_text()
    jobs = await queue.get_many(ids)
    assert {job.state for job in jobs} == {JobState.PENDING}
    assert all(job.attempts_made == 0 and job.timeline[-1].note == "released" for job in jobs)
    assert await redis.zcard(queue.keys.workers) == 0
    await assert_consistent(redis, queue.keys)


async def test_idle_worker_exits_promptly_on_sigterm(
    queue: JobQueue, redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    env = worker_env(redis_url, queue.keys.queue, worker_count=2)
    worker = start_worker(env, tmp_path / "w.log")
    try:
        await wait_until(lambda: _count(redis, queue.keys.workers, 2), timeout=20)
        await asyncio.sleep(1)  # idle, blocked waiting for work
        took = stop_worker(worker, timeout=20)
    finally:
        kill_group(worker)
    assert took < 5, (tmp_path / "w.log").read_text()


async def test_delayed_job_starts_when_due_without_a_scheduler(
    queue: JobQueue, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    env = worker_env(redis_url, queue.keys.queue, **PROBE)
    with running_worker(env, tmp_path / "w.log"):
        await wait_until(lambda: _count(redis, queue.keys.workers, 1), timeout=20)
        await asyncio.sleep(0.5)  # the worker is idle, blocked on the marker
        job = (await queue.enqueue(probe(delay_seconds=2))).job
        await wait_until(lambda: all_done(queue, [job.id]), timeout=15)
    done = await queue.get(job.id)
    assert done.started_at is not None
    late = (done.started_at - done.scheduled_for).total_seconds()
    assert 0 <= late < 1.0, f"started {late:.3f} s after due"


async def test_cancel_stops_a_processing_job_within_a_second(
    queue: JobQueue, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    job = (await queue.enqueue(probe(60, attempts=3))).job
    env = worker_env(redis_url, queue.keys.queue, **PROBE)
    with running_worker(env, tmp_path / "w.log"):
        await wait_until(lambda: _count(redis, queue.keys.active, 1), timeout=20)
        await wait_until(lambda: queue.logs(job.id), timeout=5)  # its code is running
        cancelled_at = time.monotonic()
        assert (await queue.cancel(job.id)).state is JobState.CANCELLED
        await wait_until(lambda: _has_line(queue, job.id, "stopped"), timeout=1)
        stopped_in = time.monotonic() - cancelled_at
        await asyncio.sleep(0.5)
    final = await queue.get(job.id)
    assert final.state is JobState.CANCELLED and final.attempts_made == 1
    assert stopped_in < 1
    await assert_consistent(redis, queue.keys)


async def test_retries_follow_the_backoff_with_a_real_worker(
    queue: JobQueue, redis_url: str, tmp_path: Path
) -> None:
    backoff = Backoff(type="exponential", delay_seconds=0.5, jitter=0)
    job = (
        await queue.enqueue(
            JobSpec(type="noop", data={"fail_first_attempts": 2}, attempts=3, backoff=backoff)
        )
    ).job
    with running_worker(worker_env(redis_url, queue.keys.queue), tmp_path / "w.log"):
        await wait_until(lambda: all_done(queue, [job.id]), timeout=20)
    done = await queue.get(job.id)
    assert (done.state, done.attempts_made) == (JobState.COMPLETED, 3)
    starts = [e.at for e in done.timeline if e.state is JobState.PROCESSING]
    retries = [e.at for e in done.timeline if e.state is JobState.DELAYED]
    waits = [
        (start - failed).total_seconds() for failed, start in zip(retries, starts[1:], strict=True)
    ]
    assert waits[0] == pytest.approx(0.5, abs=0.3)
    assert waits[1] == pytest.approx(1.0, abs=0.3)


async def test_four_processes_over_5000_jobs_run_each_exactly_once(
    queue: JobQueue, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    ids = []
    for _ in range(5):
        ids += [r.job.id for r in await queue.enqueue_many([probe()] * 1000)]
    env = worker_env(redis_url, queue.keys.queue, worker_count=4, worker_concurrency=20, **PROBE)
    with running_worker(env, tmp_path / "w.log"):
        await wait_until(
            lambda: _count(redis, queue.keys.completed, 5000), timeout=90, interval=0.5
        )
    jobs = await queue.get_many(ids)
    assert len(jobs) == 5000
    assert {job.state for job in jobs} == {JobState.COMPLETED}
    assert {job.attempts_made for job in jobs} == {1}
    pipe = redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.llen(queue.keys.logs(job_id))
    assert set(await pipe.execute()) == {1}  # each job's code ran once
    assert len({job.worker_id for job in jobs}) == 4  # and all four processes took part
    await assert_consistent(redis, queue.keys)
    await assert_no_leaked_keys(redis, queue.keys)


async def _count(redis: Redis, key: str, at_least: int) -> bool:
    return int(await redis.zcard(key)) >= at_least


async def _has_line(queue: JobQueue, job_id: str, line: str) -> bool:
    return line in await queue.logs(job_id)


def _message_with_seconds(message: str, seconds: float) -> str:
    body = json.loads(message)
    body["kwargs"]["data"]["seconds"] = seconds
    return json.dumps(body)
