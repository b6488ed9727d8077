"""The canary: one `noop` job per period whose end-to-end latency shows that jobs really flow.

Every process can heartbeat while no job completes (a wedged event loop, a broken deploy, a
type limit stuck at zero). The canary catches that: the metrics task enqueues a noop job each
period and publishes how long the canaries took, or how long the oldest one has been waiting.

Canary job ids are derived from the period number, so the task keeps no state: a restarted task
or a scheduled `--once` run finds earlier canaries by id, and two publishers overlapping during
a deploy enqueue one canary per period, not two (enqueue with an existing id is a no-op).
"""

from __future__ import annotations

from collections.abc import Sequence

from service.jobs import load_job_types
from service.queue.models import Job
from service.queue.queue import JobQueue, QueueConfig
from service.queue.states import Priority

# Canaries of this many earlier periods are read each period: a stuck canary keeps raising the
# published latency for this long, then it drops out and stops dominating the metric.
LOOKBACK_PERIODS = 10
CANARY_TYPE = "noop"


def canary_id(period_index: int) -> str:
    """The job id of the canary enqueued in period number `period_index`."""
    return f"canary-{period_index}"


def period_index(now: float, period_seconds: float) -> int:
    """Which period `now` falls in (periods counted from the epoch)."""
    return int(now // period_seconds)


def canary_latency(jobs: Sequence[Job], now: float) -> float | None:
    """Seconds: the age of the oldest unfinished canary, or the newest finished one's run time,
    whichever is larger; None when there are no canaries to judge."""
    if not jobs:
        return None
    runs = [
        (job.created_at, (job.finished_at - job.created_at).total_seconds())
        for job in jobs
        if job.finished_at is not None
    ]
    waiting = [job.created_at.timestamp() for job in jobs if job.finished_at is None]
    latency = max(runs)[1] if runs else 0.0  # the newest finished canary
    if waiting:
        latency = max(latency, now - min(waiting))
    return latency


async def measure(queue: JobQueue, index: int) -> float | None:
    """The canary latency from the canaries of the periods before `index`."""
    ids = [canary_id(i) for i in range(index - LOOKBACK_PERIODS, index)]
    return canary_latency(await queue.get_many(ids), queue.clock())


async def enqueue(queue: JobQueue, config: QueueConfig, index: int) -> None:
    """Enqueue this period's canary (nothing happens if it already exists).

    Critical priority: the canary measures whether jobs flow at all, not how long the backlog
    is; a deep backlog is what the oldest-pending-age alarm is for.
    """
    # load_job_types imports the built-in modules, so `noop` is registered whoever calls this.
    noop = load_job_types().get(CANARY_TYPE)
    spec = noop.build_spec({}, config, priority=Priority.CRITICAL, attempts=1)
    await queue.enqueue(spec, job_id=canary_id(index))
