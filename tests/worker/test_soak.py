"""Issue 19's soak: many short runs of a real receiver on a real Redis, each with a random
concurrency, prefetch, job length, arrival pattern and a call made slow on purpose (finish or
dequeue replies held back by a relay). Every run must drain, each job run exactly once.

The stall detector is set out of reach, so only the wake-ups drain the queue. Seedable:
SOAK_SEED=<n> replays a run set (every failure names its seed); SOAK_SECONDS bounds the time.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from service import healthcheck
from service.queue.job_context import current_job
from service.queue.keys import QueueKeys
from service.queue.models import JobSpec
from service.queue.queue import JobQueue, QueueConfig
from service.queue.states import JobState
from service.settings import Settings
from service.worker.receiver import JobReceiver
from service.worker.taskiq_broker import JobQueueBroker
from tests.conftest import delete_queue_keys
from tests.support.relay import SlowingRelay, script_sha
from tests.support.state import assert_consistent

pytestmark = pytest.mark.slow

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "30"))
SEED = int(os.environ.get("SOAK_SEED", str(random.randrange(2**32))))
DRAIN_SECONDS = 30.0
MIN_RUNS = 10  # whatever SOAK_SECONDS says


@dataclass(frozen=True)
class Plan:
    """One run's shape."""

    concurrency: int
    prefetch: int
    jobs: int
    longest_job_ms: int
    arrival: str  # "backlog", "bursts" or "trickle"
    slowed: str  # the script whose replies are held back
    delay: float

    @classmethod
    def draw(cls, rng: random.Random) -> Plan:
        concurrency = rng.choice([1, 1, 2, 3, 5, 10, 20])
        return cls(
            concurrency=concurrency,
            prefetch=rng.choice([0, 1, concurrency, 2 * concurrency]),
            jobs=rng.randint(1, 6 * concurrency + 10),
            longest_job_ms=rng.choice([0, 2, 20, 100]),
            arrival=rng.choice(["backlog", "bursts", "trickle"]),
            slowed=rng.choice(["finish", "dequeue"]),
            delay=rng.choice([0.0, 0.01, 0.05, 0.15]),
        )


async def _arrive(queue: JobQueue, plan: Plan, rng: random.Random) -> list[str]:
    specs = [
        JobSpec(type="soak", data={"ms": rng.randint(0, plan.longest_job_ms)})
        for _ in range(plan.jobs)
    ]
    if plan.arrival == "backlog":
        return [r.job.id for r in await queue.enqueue_many(specs)]
    size = plan.concurrency if plan.arrival == "bursts" else 1
    ids: list[str] = []
    for start in range(0, len(specs), size):
        ids += [r.job.id for r in await queue.enqueue_many(specs[start : start + size])]
        await asyncio.sleep(rng.choice([0.0, 0.01, 0.05, 0.2]))
    return ids


async def _one_run(redis_url: str, redis: Redis, plan: Plan, rng: random.Random) -> None:
    name = "t-" + uuid.uuid4().hex[:12]
    queue = JobQueue(redis, QueueKeys("jqtest", name), QueueConfig())
    relay = SlowingRelay(redis_url, script_sha(plan.slowed), plan.delay)
    settings = Settings(
        redis_url=relay.start(),
        queue_name=name,
        key_prefix="jqtest",
        worker_concurrency=plan.concurrency,
        worker_prefetch=plan.prefetch,
        worker_stall_seconds=3600,
    )
    broker = JobQueueBroker(settings)
    broker.is_worker_process = True
    runs: Counter[str] = Counter()

    @broker.task(task_name="soak")
    async def soak(data: dict[str, Any]) -> None:
        runs[current_job.get().job_id] += 1
        await asyncio.sleep(data["ms"] / 1000)

    finish = asyncio.Event()
    listening = asyncio.create_task(JobReceiver(broker, max_async_tasks=1000).listen(finish))
    try:
        ids = await _arrive(queue, plan, rng)
        deadline = time.monotonic() + DRAIN_SECONDS
        while int(await redis.zcard(queue.keys.completed)) < len(ids):
            pending = await redis.zcard(queue.keys.pending)
            assert time.monotonic() < deadline, f"did not drain ({pending} pending): {plan}"
            await asyncio.sleep(0.02)
        finish.set()
        await asyncio.wait_for(listening, 30)
        jobs = await queue.get_many(ids)
        assert {job.state for job in jobs} == {JobState.COMPLETED}, plan
        assert {job.attempts_made for job in jobs} == {1}, plan
        assert runs == Counter(ids), f"lost or doubled: {plan}"
        await assert_consistent(redis, queue.keys)
    finally:
        finish.set()
        await asyncio.wait([listening], timeout=30)
        await broker.shutdown()
        relay.stop()
        await delete_queue_keys(redis, name)


async def test_every_run_drains_with_nothing_lost_or_doubled(
    redis_url: str, redis: Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(healthcheck.HEALTH_DIR_ENV, str(tmp_path))
    rng = random.Random(SEED)
    started, runs = time.monotonic(), 0
    while runs < MIN_RUNS or time.monotonic() - started < SOAK_SECONDS:
        plan = Plan.draw(rng)
        try:
            await _one_run(redis_url, redis, plan, rng)
        except AssertionError as failed:
            raise AssertionError(f"SOAK_SEED={SEED}, run {runs + 1}: {failed}") from failed
        runs += 1
    print(f"\nsoak: {runs} runs drained, seed {SEED}")
