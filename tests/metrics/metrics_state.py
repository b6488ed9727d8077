"""Helpers for the metrics tests: a controllable clock and a known queue state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis

from service.queue.consumer import Consumer, Outcome
from service.queue.keys import QueueKeys
from service.queue.models import JobSpec
from service.queue.queue import JobQueue
from service.queue.states import Priority
from tests.support.clock import SettableClock

T = TypeVar("T")

# A whole minute an hour ago: close enough to now that CloudWatch (and moto) take the data.
T0 = float(int(time.time() // 60) * 60 - 3600)


class FakeClock(SettableClock):
    """A settable clock for JobQueue, Consumer and the metrics loop, starting at T0."""

    def __init__(self, now: float = T0) -> None:
        super().__init__(now)


@dataclass(frozen=True)
class KnownState:
    """What `build_known_state` created, as the metrics must report it at T0 + 5."""

    depth_by_priority: dict[str, int]
    depth_by_type: dict[str, int]
    delayed: int = 3
    active: int = 1  # leased and running (worker-a's heartbeat says so)
    reserved: int = 2  # leased by worker-a, prefetched, not started
    oldest_pending_age: float = 45.0
    completed: int = 3
    failed: int = 2
    retried: int = 1
    live_workers: int = 2
    wait_ms: tuple[float, float] = (2000.0, 3000.0)  # p50, p99
    run_ms: tuple[float, float] = (200.0, 300.0)
    # worker-a and worker-b run in two tasks (hosts); worker-b's stall detector has fired.
    live_tasks: int = 2
    stalled_workers: int = 1
    # The 3 high `beta` jobs are grouped: 2 of tenant-1, 1 of tenant-2.
    groups_with_backlog: int = 2
    largest_group_share: float = 66.67  # percent

    @property
    def depth(self) -> int:
        return sum(self.depth_by_priority.values())

    @property
    def backlog(self) -> int:
        """Pending due jobs plus the leased ones, running or reserved; delayed ones are not due."""
        return self.depth + self.active + self.reserved


def spec(job_type: str, priority: Priority = Priority.NORMAL, **options: object) -> JobSpec:
    return JobSpec(type=job_type, priority=priority, **options)  # type: ignore[arg-type]


async def build_known_state(queue: JobQueue, clock: FakeClock) -> KnownState:
    """Jobs in every state, all finishing in the minute before T0; the clock ends at T0 + 5.

    Minute T0-60: 3 `gamma` jobs complete (waits 1/2/3 s, runs 0.1/0.2/0.3 s), 2 `delta` jobs
    fail for good, 1 `delta` job fails and is scheduled for a retry in 10 min, 3 `epsilon` jobs
    are taken: worker-a's heartbeat says 1 runs and 2 are reserved (prefetched). T0-40: 10 jobs
    pending (1 low, 2 normal `alpha`, 3 high (grouped: 2 of t1, 1 of t2), 4 critical `beta`).
    T0-30: 2 `zeta` jobs delayed 10 min. Two workers heartbeat.
    """
    consumer = Consumer(queue, "worker-a", lease_seconds=3600)
    a = T0 - 59
    clock.set(a)
    await queue.enqueue_many([spec("gamma") for _ in range(3)])
    for i in (1, 2, 3):
        clock.set(a + i)
        [delivery], _ = await consumer.dequeue(1)
        clock.set(a + i + i / 10)
        # As a worker does: the finish carries when the job's code started (dequeue writes none).
        started = int((a + i) * 1000)
        await consumer.finish_many([Outcome(delivery.job_id, True, "null", started_ms=started)])
    clock.set(a + 10)
    await queue.enqueue_many([spec("delta"), spec("delta"), spec("delta", attempts=3)])
    deliveries, _ = await consumer.dequeue(3)
    await consumer.finish_many(
        [
            Outcome(deliveries[0].job_id, False, "boom"),
            Outcome(deliveries[1].job_id, False, "boom"),
            Outcome(deliveries[2].job_id, False, "boom", retry_delay_ms=600_000),
        ]
    )
    await queue.enqueue_many([spec("epsilon") for _ in range(3)])
    taken, _ = await consumer.dequeue(3)
    assert len(taken) == 3

    clock.set(T0 - 40)
    await queue.enqueue_many(
        [spec("alpha", Priority.LOW)]
        + [spec("alpha", Priority.NORMAL) for _ in range(2)]
        + [spec("beta", Priority.HIGH, group=group) for group in ("t1", "t1", "t2")]
        + [spec("beta", Priority.CRITICAL) for _ in range(4)]
    )
    clock.set(T0 - 30)
    await queue.enqueue_many([spec("zeta", delay_seconds=600) for _ in range(2)])
    clock.set(T0 + 5)
    await heartbeat(queue, "worker-a", host="task-a", running=1, reserved=2)
    await heartbeat(queue, "worker-b", host="task-b", stalled=True)
    return KnownState(
        depth_by_priority={"low": 1, "normal": 2, "high": 3, "critical": 4},
        depth_by_type={"alpha": 3, "beta": 7, "delta": 0, "epsilon": 0, "gamma": 0, "zeta": 0},
    )


async def heartbeat(
    queue: JobQueue,
    worker_id: str,
    host: str = "test",
    *,
    stalled: bool = False,
    running: int = 0,
    reserved: int = 0,
) -> None:
    """Register a live worker for a minute of real time, running and reserving that many jobs."""
    info: dict[str, str | int] = {
        "id": worker_id, "host": host, "pid": 1, "started": int(T0 * 1000), "concurrency": 10,
        "stalled": "1" if stalled else "0", "stalls": 1 if stalled else 0,
        "running": running, "reserved": reserved,
    }  # fmt: skip
    await Consumer(queue, worker_id, lease_seconds=30).heartbeat(info, [], ttl_ms=60_000)


async def unlink_queue(redis: Redis, keys: QueueKeys) -> None:
    """Delete a big test queue fast (UNLINK in pipelined batches) before the fixture's cleanup."""
    batch: list[str] = []
    async for key in redis.scan_iter(match=f"{keys.prefix}:{{{keys.queue}}}:*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            await redis.unlink(*batch)
            batch = []
    if batch:
        await redis.unlink(*batch)


async def in_own_thread(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a command that calls asyncio.run in a thread of its own, as the CLI would be.

    asyncio.run clears the calling thread's event loop when it ends; in pytest's main thread
    that breaks later tests which ask for the current loop (the Pulumi mocks do).
    """
    return await asyncio.to_thread(func, *args, **kwargs)
