"""`check_health` reaches each status from a real queue state, naming the check that decided."""

from __future__ import annotations

from metrics_state import T0, FakeClock, heartbeat, spec
from redis.asyncio import Redis

from service.metrics.health import HealthReport, check_health
from service.queue.consumer import Consumer, Outcome
from service.queue.keys import QueueKeys
from service.queue.queue import JobQueue, QueueConfig
from service.settings import Settings

SETTINGS = Settings(environment="test")


def statuses(report: HealthReport) -> dict[str, str]:
    return {check.name: check.status for check in report.checks}


async def test_an_idle_queue_is_healthy(cqueue: JobQueue) -> None:
    report = await check_health(cqueue, SETTINGS)

    assert report.status == "healthy"
    assert statuses(report) == {
        "redis": "healthy", "workers": "healthy", "oldest_pending": "healthy",
        "failure_rate": "healthy",
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
    dead = Redis(host="127.0.0.1", port=1, decode_responses=True, socket_connect_timeout=1)
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
