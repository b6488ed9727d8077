"""`GET /jobs/health`: healthy, degraded or unhealthy, from named checks with thresholds in
settings, so the reason is always in the answer.

Checks:
- redis: reachable (else unhealthy, and nothing else can be judged) and its round-trip latency;
- workers: work waiting (pending or processing) with no live worker is unhealthy;
- oldest_pending: how long the longest-waiting job has waited;
- failure_rate: failed / (completed + failed) over a window of minutes, once enough jobs finished;
- memory: Redis memory against the point where enqueues stop (ENQUEUE_MAX_MEMORY_SHARE of
  maxmemory): unhealthy while enqueues are refused, degraded within 10% of that point;
- stalled_workers: a live worker's stall detector says it has room, due jobs wait, and it takes
  none (degraded: the others still work).
The overall status is the worst check's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel
from redis.exceptions import RedisError

from service.queue.errors import QueueUnavailableError
from service.queue.models import MemoryUsage, QueueCounts, WorkerInfo
from service.queue.queue import JobQueue
from service.queue.states import JobState
from service.settings import Settings

HealthStatus = Literal["healthy", "degraded", "unhealthy"]
_RANK: dict[HealthStatus, int] = {"healthy": 0, "degraded": 1, "unhealthy": 2}
# Degraded once memory is within this fraction of where enqueues stop: time to act before
# clients see 503 queue_full.
MEMORY_WARNING_FRACTION = 0.9


class CheckResult(BaseModel):
    """One named check: its verdict, why, and the number it judged."""

    name: str
    status: HealthStatus
    detail: str
    value: float | None = None


class HealthReport(BaseModel):
    """The overall status (the worst check's) and every check."""

    status: HealthStatus
    checks: list[CheckResult]


def worst(statuses: Sequence[HealthStatus]) -> HealthStatus:
    """The most severe of `statuses` (healthy for none)."""
    return max(statuses, key=lambda s: _RANK[s], default="healthy")


def by_threshold(value: float, degraded: float, unhealthy: float | None = None) -> HealthStatus:
    """Unhealthy above `unhealthy`, degraded above `degraded`, else healthy."""
    if unhealthy is not None and value > unhealthy:
        return "unhealthy"
    return "degraded" if value > degraded else "healthy"


def check_redis_latency(latency_seconds: float, settings: Settings) -> CheckResult:
    """Redis answered; degraded when its round trip is slower than the threshold."""
    ms = latency_seconds * 1000
    limit = settings.health_max_redis_latency_ms
    status = by_threshold(ms, limit)
    return CheckResult(
        name="redis", status=status, detail=f"PING took {ms:.1f} ms (limit {limit:g} ms)", value=ms
    )


def check_workers(counts: QueueCounts, live_workers: int) -> CheckResult:
    """Unhealthy when jobs wait or hold leases and no worker is alive to run them."""
    work = counts.by_state.get(JobState.PENDING, 0) + counts.by_state.get(JobState.PROCESSING, 0)
    if work and not live_workers:
        return CheckResult(
            name="workers",
            status="unhealthy",
            detail=f"{work} job(s) pending or processing and no live worker",
            value=0,
        )
    return CheckResult(
        name="workers",
        status="healthy",
        detail=f"{live_workers} live worker(s), {work} job(s) pending or processing",
        value=live_workers,
    )


def check_oldest_pending(counts: QueueCounts, settings: Settings) -> CheckResult:
    """How long the longest-waiting pending job has waited, against two thresholds."""
    age = counts.oldest_pending_age_seconds
    degraded = settings.health_oldest_pending_degraded_seconds
    unhealthy = settings.health_oldest_pending_unhealthy_seconds
    return CheckResult(
        name="oldest_pending",
        status=by_threshold(age, degraded, unhealthy),
        detail=f"oldest pending job waited {age:.0f} s (degraded > {degraded:g} s, "
        f"unhealthy > {unhealthy:g} s)",
        value=age,
    )


def check_failure_rate(throughput: dict[str, int], settings: Settings) -> CheckResult:
    """failed / finished over the window, judged only once enough jobs finished."""
    completed, failed = throughput["completed"], throughput["failed"]
    finished = completed + failed
    rate = failed / finished if finished else 0.0
    window = settings.health_failure_window_minutes
    detail = f"{failed} of {finished} finished job(s) failed in the last ~{window} min"
    if finished < settings.health_failure_min_jobs:
        detail += f" (below {settings.health_failure_min_jobs} jobs: not judged)"
        return CheckResult(name="failure_rate", status="healthy", detail=detail, value=rate)
    status = by_threshold(
        rate, settings.health_failure_rate_degraded, settings.health_failure_rate_unhealthy
    )
    return CheckResult(name="failure_rate", status=status, detail=detail, value=rate)


def check_memory(memory: MemoryUsage) -> CheckResult:
    """Unhealthy while enqueues are refused for memory; degraded close to that point."""
    used, limit = memory.used_bytes, memory.enqueue_limit_bytes
    if not limit:
        return CheckResult(
            name="memory",
            status="healthy",
            detail=f"Redis uses {used} bytes; no maxmemory set, so no enqueue limit",
            value=used,
        )
    share = used / limit
    status: HealthStatus = "healthy"
    if memory.refusing_enqueues:
        status = "unhealthy"
    elif share > MEMORY_WARNING_FRACTION:
        status = "degraded"
    verdict = "enqueues refused" if memory.refusing_enqueues else "enqueues accepted"
    return CheckResult(
        name="memory",
        status=status,
        detail=f"Redis uses {used} of {memory.max_bytes} bytes; enqueues stop above {limit} "
        f"(ENQUEUE_MAX_MEMORY_SHARE): {verdict}",
        value=used,
    )


def check_stalled_workers(workers: Sequence[WorkerInfo]) -> CheckResult:
    """Degraded when any live worker reports itself stalled at its last heartbeat."""
    stalled = [w.id for w in workers if w.stalled]
    if stalled:
        return CheckResult(
            name="stalled_workers",
            status="degraded",
            detail=f"{len(stalled)} of {len(workers)} live worker(s) stalled: "
            + ", ".join(stalled[:10]),
            value=len(stalled),
        )
    return CheckResult(
        name="stalled_workers",
        status="healthy",
        detail=f"none of {len(workers)} live worker(s) stalled",
        value=0,
    )


def unreachable(exc: Exception) -> HealthReport:
    """The report when Redis cannot be read: unhealthy, saying why."""
    check = CheckResult(
        name="redis", status="unhealthy", detail=f"Redis unreachable or failing: {exc}"
    )
    return HealthReport(status="unhealthy", checks=[check])


async def check_health(queue: JobQueue, settings: Settings) -> HealthReport:
    """Run every check against the live queue; never raises (Redis down -> unhealthy)."""
    try:
        latency = await queue.ping()
        counts, throughput, workers, memory = await asyncio.gather(
            queue.counts(),
            queue.throughput(settings.health_failure_window_minutes),
            queue.workers(),
            queue.memory(),
        )
    except (QueueUnavailableError, RedisError) as exc:
        return unreachable(exc)
    checks = [
        check_redis_latency(latency, settings),
        check_workers(counts, len(workers)),
        check_oldest_pending(counts, settings),
        check_failure_rate(throughput, settings),
        check_memory(memory),
        check_stalled_workers(workers),
    ]
    return HealthReport(status=worst([c.status for c in checks]), checks=checks)
