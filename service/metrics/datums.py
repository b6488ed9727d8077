"""The one mapping from a queue snapshot to contract metrics and their values.

CloudWatch publishing, the dry run and Prometheus all render this list, so every output carries
the same metrics with the same values; only the dimension spelling differs per backend.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from service.metrics import contract as c
from service.metrics.collector import QueueSnapshot
from service.queue.states import JobState


@dataclass(frozen=True)
class Datum:
    """One value of one contract metric.

    `extra_value` is the value of the metric's extra dimension (a priority or a job type).
    `at` overrides the publish time for values that describe a past window (period counters).
    """

    spec: c.MetricSpec
    value: float
    extra_value: str | None = None
    at: datetime | None = None


def snapshot_datums(snapshot: QueueSnapshot, job_types: Iterable[str] = ()) -> list[Datum]:
    """Every contract metric the snapshot defines, zeros included (all but the canary).

    `job_types` (the registered types) get a per-type depth series even before their first job,
    so an alarm on one has data from the first period instead of INSUFFICIENT_DATA.
    """
    return [
        *_depth_datums(snapshot, job_types),
        *_flow_datums(snapshot),
        *_latency_datums(snapshot),
    ]


def canary_datum(latency_seconds: float) -> Datum:
    """The canary's end-to-end latency."""
    return Datum(c.CANARY_LATENCY, latency_seconds)


def _depth_datums(snapshot: QueueSnapshot, job_types: Iterable[str]) -> list[Datum]:
    counts = snapshot.counts
    by_priority = [
        Datum(c.QUEUE_DEPTH_BY_PRIORITY, counts.pending_by_priority.get(p, 0), p)
        for p in c.PRIORITY_DIMENSION_VALUES
    ]
    # Every type the queue has ever counted keeps its series, so a type that drained
    # publishes 0 instead of going silent; so does every registered type.
    by_type = [
        Datum(c.QUEUE_DEPTH_BY_TYPE, counts.by_type.get(t, {}).get(JobState.PENDING, 0), t)
        for t in sorted({*counts.by_type, *job_types})
    ]
    return [
        Datum(c.QUEUE_DEPTH, snapshot.depth),
        *by_priority,
        *by_type,
        Datum(c.DELAYED_JOBS, counts.by_state.get(JobState.DELAYED, 0)),
        Datum(c.ACTIVE_JOBS, counts.by_state.get(JobState.PROCESSING, 0)),
        Datum(c.RESERVED_JOBS, counts.reserved),
        Datum(c.OLDEST_PENDING_AGE, counts.oldest_pending_age_seconds),
    ]


def _flow_datums(snapshot: QueueSnapshot) -> list[Datum]:
    # Counters describe their window, so they are stamped with its start: CloudWatch then shows
    # a job in the minute it finished rather than the minute it was published.
    at = snapshot.period_started_at
    return [
        Datum(c.JOBS_COMPLETED, snapshot.completed_last_period, at=at),
        Datum(c.JOBS_FAILED, snapshot.failed_last_period, at=at),
        Datum(c.JOBS_RETRIED, snapshot.retried_last_period, at=at),
        Datum(c.LIVE_WORKERS, snapshot.live_workers),
        Datum(c.BACKLOG_PER_WORKER, snapshot.backlog_per_worker),
        Datum(c.QUEUE_BACKLOG, snapshot.backlog),
        Datum(c.LIVE_WORKER_TASKS, snapshot.live_tasks),
        Datum(c.BACKLOG_PER_TASK, snapshot.backlog_per_task),
        Datum(c.STALLED_WORKERS, snapshot.stalled_workers),
        Datum(c.GROUPS_WITH_BACKLOG, snapshot.groups_with_backlog),
        Datum(c.LARGEST_GROUP_SHARE, round(snapshot.largest_group_share * 100, 2)),
    ]


def _latency_datums(snapshot: QueueSnapshot) -> list[Datum]:
    return [
        Datum(c.JOB_WAIT_P50, snapshot.wait_p50_ms),
        Datum(c.JOB_WAIT_P99, snapshot.wait_p99_ms),
        Datum(c.JOB_RUN_P50, snapshot.run_p50_ms),
        Datum(c.JOB_RUN_P99, snapshot.run_p99_ms),
    ]
