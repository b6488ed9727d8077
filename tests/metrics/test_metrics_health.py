"""`check_health` reaches each status from a real queue state, naming the check that decided."""

from __future__ import annotations

from metrics_state import T0, FakeClock, heartbeat, spec

from service.metrics.health import (
    HealthReport,
    check_health,
    check_memory,
    check_stalled_workers,
)
from service.queue.consumer import Consumer, Outcome
from service.queue.keys import QueueKeys
from service.queue.models import MemoryUsage, WorkerInfo, from_ms
from service.queue.queue import JobQueue, QueueConfig
from service.settings import Settings
from tests.support.dead_redis import dead_redis

SETTINGS = Settings(environment="test")


def statuses(report: HealthReport) -> dict[str, str]:
    return {check.name: check.status for check in report.checks}


async def test_an_idle_queue_is_healthy(cqueue: JobQueue) -> None:
    report = await check_health(cqueue, SETTINGS)

    assert report.status == "healthy"
    assert statuses(report) == {
        "redis": "healthy", "workers": "healthy", "oldest_pending": "healthy",
        "failure_rate": "healthy", "memory": "healthy", "stalled_workers": "healthy",
    }  # fmt: skip


async def test_pending_work_without_a_live_worker_is_unhealthy(cqueue: JobQueue) -> None:
    await cqueue.enqueue(spec("x"))

    report = await check_health(cqueue, SETTINGS)

    assert report.status == "unhealthy"
    assert statuses(report)["workers"] == "unhealthy"


async def test_pending_work_with_a_live_worker_is_healthy(cqueue: JobQueue) -> None:
    await cqueue.enqueue(spec("x"))
    await heartbeat(cqueue, "w1")

    report = await check_health(cqueue, SETTINGS)

    assert report.status == "healthy"
    assert next(c for c in report.checks if c.name == "workers").value == 1


async def test_an_old_pending_job_degrades_then_makes_unhealthy(
    cqueue: JobQueue, clock: FakeClock
) -> None:
    await heartbeat(cqueue, "w1")
    await cqueue.enqueue(spec("x"))

    clock.set(T0 + 301)
    degraded = await check_health(cqueue, SETTINGS)
    clock.set(T0 + 1801)
    unhealthy = await check_health(cqueue, SETTINGS)

    assert (degraded.status, statuses(degraded)["oldest_pending"]) == ("degraded", "degraded")
    assert (unhealthy.status, statuses(unhealthy)["oldest_pending"]) == ("unhealthy", "unhealthy")


async def _finish(queue: JobQueue, completed: int, failed: int) -> None:
    consumer = Consumer(queue, "w1", lease_seconds=3600)
    await queue.enqueue_many([spec("x") for _ in range(completed + failed)])
    deliveries, _ = await consumer.dequeue(completed + failed)
    await consumer.finish_many(
        [Outcome(d.job_id, i < completed, "null") for i, d in enumerate(deliveries)]
    )


async def test_failure_rate_degrades_then_makes_unhealthy(cqueue: JobQueue) -> None:
    await _finish(cqueue, completed=16, failed=4)  # 20%
    degraded = await check_health(cqueue, SETTINGS)
    await _finish(cqueue, completed=0, failed=20)  # 24 of 40 = 60%
    unhealthy = await check_health(cqueue, SETTINGS)

    assert (degraded.status, statuses(degraded)["failure_rate"]) == ("degraded", "degraded")
    assert (unhealthy.status, statuses(unhealthy)["failure_rate"]) == ("unhealthy", "unhealthy")
    assert next(c for c in unhealthy.checks if c.name == "failure_rate").value == 0.6


async def test_a_few_failures_are_not_judged(cqueue: JobQueue) -> None:
    await _finish(cqueue, completed=1, failed=2)

    report = await check_health(cqueue, SETTINGS)

    assert statuses(report)["failure_rate"] == "healthy"
    assert "not judged" in next(c for c in report.checks if c.name == "failure_rate").detail


async def test_slow_redis_is_degraded(cqueue: JobQueue) -> None:
    strict = Settings(environment="test", health_max_redis_latency_ms=0.000_001)

    report = await check_health(cqueue, strict)

    assert report.status == "degraded"
    assert statuses(report)["redis"] == "degraded"


async def test_unreachable_redis_is_unhealthy_and_never_raises() -> None:
    dead = dead_redis()
    try:
        report = await check_health(
            JobQueue(dead, QueueKeys("jqtest", "dead"), QueueConfig()), SETTINGS
        )
    finally:
        await dead.aclose()  # type: ignore[attr-defined, unused-ignore]

    assert report.status == "unhealthy"
    [check] = report.checks
    assert check.name == "redis"
    assert "unreachable" in check.detail


MB = 1_000_000


def test_memory_is_unhealthy_while_enqueues_are_refused_and_degraded_close_to_it() -> None:
    share = 0.9  # refusing above 90 MB of 100 MB
    readings = {
        used: check_memory(MemoryUsage.of(used * MB, 100 * MB, share)) for used in (50, 82, 89, 91)
    }

    assert {used: check.status for used, check in readings.items()} == {
        50: "healthy", 82: "degraded", 89: "degraded", 91: "unhealthy",
    }  # fmt: skip
    assert "enqueues refused" in readings[91].detail
    assert "ENQUEUE_MAX_MEMORY_SHARE" in readings[91].detail
    assert readings[91].value == 91 * MB


def test_memory_without_maxmemory_is_healthy_and_says_there_is_no_limit() -> None:
    check = check_memory(MemoryUsage.of(5 * MB, 0, 0.9))

    assert (check.status, check.value) == ("healthy", 5 * MB)
    assert "no maxmemory" in check.detail


def _worker(worker_id: str, stalled: bool) -> WorkerInfo:
    at = from_ms(int(T0 * 1000))
    assert at is not None
    return WorkerInfo(
        id=worker_id, host="h", pid=1, started_at=at, last_heartbeat=at, processed=0,
        failed=0, concurrency=10, current_jobs=[], stalled=stalled, stalls=int(stalled),
    )  # fmt: skip


def test_any_stalled_live_worker_degrades_and_is_named() -> None:
    none_stalled = check_stalled_workers([_worker("a", False), _worker("b", False)])
    one_stalled = check_stalled_workers([_worker("a", False), _worker("b", True)])
    no_workers = check_stalled_workers([])

    assert (none_stalled.status, none_stalled.value) == ("healthy", 0)
    assert (one_stalled.status, one_stalled.value) == ("degraded", 1)
    assert "1 of 2" in one_stalled.detail and "b" in one_stalled.detail
    assert no_workers.status == "healthy"


async def test_a_worker_heartbeating_stalled_degrades_the_queue(cqueue: JobQueue) -> None:
    # The registry hash exactly as the worker's heartbeat writes it, stall verdict included.
    info: dict[str, str | int] = {
        "id": "w-stuck", "host": "h", "pid": 1, "started": int(T0 * 1000), "concurrency": 10,
        "stalled": "1", "stalls": 2,
    }  # fmt: skip
    await Consumer(cqueue, "w-stuck", lease_seconds=30).heartbeat(info, [], ttl_ms=60_000)
    await heartbeat(cqueue, "w-fine")

    report = await check_health(cqueue, SETTINGS)

    assert report.status == "degraded"
    assert statuses(report)["stalled_workers"] == "degraded"
    assert "w-stuck" in next(c for c in report.checks if c.name == "stalled_workers").detail
