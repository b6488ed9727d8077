"""The queue's numbers at one moment, read in a fixed number of Redis round trips.

The metrics task, `/jobs/stats`, `/jobs/workers`, `/jobs/health` and `/metrics` all read this one
collector, so CloudWatch, Prometheus and the API can never disagree about what "depth" means.

Every read is an O(1) or O(log n) command (ZCARD, ZCOUNT, HGETALL of small hashes, LRANGE of the
capped sample list); nothing scans jobs, so the cost is the same at 10 or 100,000 pending jobs.
Round trips: counts 2, per-minute counters 1, samples 1, workers 2, groups 1 (7 in all),
issued concurrently so the wall time is about two round trips.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import BaseModel

from service.queue.flow_control import FlowControl, FlowState
from service.queue.groups import Groups
from service.queue.models import QueueCounts, WorkerInfo
from service.queue.queue import JobQueue
from service.queue.states import JobState

# The queue keeps completed/failed/retried counters per epoch minute.
MINUTE_SECONDS = 60
COUNTER_NAMES = ("completed", "failed", "retried")

MinuteCounters = list[tuple[int, dict[str, int]]]


class QueueSnapshot(BaseModel):
    """Everything the metrics, stats and health views need, read at `taken_at`."""

    taken_at: datetime
    counts: QueueCounts
    # Counted over the whole minutes that closed in the last period (see period_minutes): each
    # job is counted in exactly one period, so CloudWatch sums over any window are exact.
    completed_last_period: int
    failed_last_period: int
    retried_last_period: int
    # A sliding 60 s estimate for people: this minute so far plus the overlapping share of the
    # previous minute (the sliding-window-counter approximation).
    throughput_last_minute: dict[str, int]
    live_workers: int
    backlog_per_worker: float
    wait_p50_ms: float
    wait_p99_ms: float
    run_p50_ms: float
    run_p99_ms: float
    workers: list[WorkerInfo]
    flow: FlowState  # what is paused and limited
    # Fair-share groups (docs/queue.md "Groups"): how many have pending jobs, and the largest
    # one's share of all grouped pending jobs (0..1).
    groups_with_backlog: int = 0
    largest_group_share: float = 0.0
    paused_group_pending: int = 0  # pending jobs of paused groups
    # The period the *_last_period counters cover: [period_started_at, +period_seconds).
    period_seconds: float = 60.0
    period_started_at: datetime | None = None

    @property
    def depth(self) -> int:
        """Jobs pending (ready to run), all priorities."""
        return self.counts.by_state.get(JobState.PENDING, 0)

    @property
    def backlog(self) -> int:
        """The scaling input: pending plus leased jobs (see backlog_of)."""
        return backlog_of(self.counts) - self.paused_pending

    @property
    def reserved(self) -> int:
        """Jobs leased by a worker that prefetched them; their code has not started."""
        return self.counts.reserved

    @property
    def paused_pending(self) -> int:
        """Pending jobs that cannot start because their queue, type or group is paused: no
        scale-out for them. (A grouped job of a paused type waits in the type's lane, not in
        its group, so no job is counted twice.)"""
        if self.flow.queue_paused:
            return self.depth
        return self.paused_group_pending + sum(
            self.counts.by_type.get(lane, {}).get(JobState.PENDING, 0)
            for lane in self.flow.paused_lanes
        )

    @property
    def live_tasks(self) -> int:
        """Worker tasks with a live process (see live_tasks)."""
        return live_tasks(self.workers)

    @property
    def backlog_per_task(self) -> float:
        """The worker autoscaling metric (see backlog_per_task)."""
        return backlog_per_task(self.backlog, self.live_tasks)

    @property
    def stalled_workers(self) -> int:
        """Workers whose last heartbeat says they are stalled."""
        return sum(1 for worker in self.workers if worker.stalled)


def period_minutes(period_seconds: float) -> int:
    """The whole minutes one period covers (at least one)."""
    return max(1, round(period_seconds / MINUTE_SECONDS))


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (0 for no values): always a value that was really observed."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return float(ordered[rank - 1])


def closed_minutes_total(rows: MinuteCounters, name: str) -> int:
    """The sum of counter `name` over every row but the last (the current, open minute)."""
    return sum(counters[name] for _, counters in rows[:-1])


def sliding_last_minute(rows: MinuteCounters, now: float) -> dict[str, int]:
    """Estimate of each counter over the last 60 s from the open minute and the one before."""
    elapsed = (now % MINUTE_SECONDS) / MINUTE_SECONDS
    (_, previous), (_, current) = rows[-2], rows[-1]
    return {name: current[name] + round(previous[name] * (1 - elapsed)) for name in COUNTER_NAMES}


def backlog_of(counts: QueueCounts) -> int:
    """What the worker fleet must still work through: pending due jobs plus leased jobs.

    Leased jobs are the active sorted set: jobs running and jobs a receiver prefetched but has
    not started. Counting pending alone reads zero while the fleet is busy, so the fleet would
    scale in under load and out again when the next batch lands (a flap). Delayed jobs are not
    due yet: they become backlog when they are promoted to pending.
    """
    leased = counts.by_state.get(JobState.PROCESSING, 0) + counts.reserved
    return counts.by_state.get(JobState.PENDING, 0) + leased


def running_jobs(workers: Sequence[WorkerInfo]) -> int:
    """Jobs whose code runs now, by the live workers' last heartbeats."""
    return sum(worker.running for worker in workers)


def running_jobs_by_type(workers: Sequence[WorkerInfo]) -> dict[str, int] | None:
    """Jobs whose code runs now per type, or None while any live worker predates that field
    (its jobs could not be placed, and a split missing them would misreport every type)."""
    total: dict[str, int] = {}
    for worker in workers:
        if worker.running_by_type is None:
            return None
        for job_type, running in worker.running_by_type.items():
            total[job_type] = total.get(job_type, 0) + running
    return total


def live_tasks(workers: Sequence[WorkerInfo]) -> int:
    """Worker tasks with a live process: on ECS (awsvpc) each task has its own host name."""
    return len({worker.host for worker in workers})


def backlog_per_task(backlog: int, tasks: int) -> float:
    """The worker autoscaling metric; with no live task the whole backlog counts as one task's,
    so the metric stays above target and the policy keeps adding capacity."""
    return backlog / max(tasks, 1)


async def collect(queue: JobQueue, period_seconds: float = 60.0) -> QueueSnapshot:
    """Read depth, flow, workers and latencies; QueueUnavailableError if Redis is down."""
    minutes = period_minutes(period_seconds)
    now = queue.clock()
    leased_counts, rows, samples, workers, flow, groups = await asyncio.gather(
        queue.counts(),
        queue.per_minute(minutes + 1),  # the closed minutes of the period plus the open one
        queue.recent_samples(),
        queue.workers(),
        FlowControl(queue).state(),
        Groups(queue).stats(),
    )
    # Processing is what runs; the other leased jobs are reserved (prefetched, not started).
    counts = leased_counts.with_running(running_jobs(workers), running_jobs_by_type(workers))
    depth = counts.by_state.get(JobState.PENDING, 0)
    waits = [wait for wait, _ in samples]
    runs = [run for _, run in samples]
    first_minute = rows[0][0]
    return QueueSnapshot(
        taken_at=datetime.fromtimestamp(now, tz=UTC),
        counts=counts,
        flow=flow,
        groups_with_backlog=groups.with_backlog,
        largest_group_share=groups.largest_share,
        paused_group_pending=groups.paused_pending,
        completed_last_period=closed_minutes_total(rows, "completed"),
        failed_last_period=closed_minutes_total(rows, "failed"),
        retried_last_period=closed_minutes_total(rows, "retried"),
        throughput_last_minute=sliding_last_minute(rows, now),
        live_workers=len(workers),
        backlog_per_worker=depth / max(len(workers), 1),
        wait_p50_ms=percentile(waits, 0.50),
        wait_p99_ms=percentile(waits, 0.99),
        run_p50_ms=percentile(runs, 0.50),
        run_p99_ms=percentile(runs, 0.99),
        workers=workers,
        period_seconds=minutes * MINUTE_SECONDS,
        period_started_at=datetime.fromtimestamp(first_minute * MINUTE_SECONDS, tz=UTC),
    )
