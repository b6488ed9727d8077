"""The metric contract between the metrics task and the infrastructure.

The metrics task publishes exactly these metrics; the Pulumi program's dashboard, alarms and
autoscaling policies import them from here. Nothing else spells a metric name, so a rename
cannot silently break an alarm (tests/infra checks every metric the infra uses is one of these).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

NAMESPACE = "JobQueue"


class Dimension(StrEnum):
    """CloudWatch dimension names."""

    QUEUE = "Queue"
    ENVIRONMENT = "Environment"
    PRIORITY = "Priority"
    JOB_TYPE = "JobType"


class Unit(StrEnum):
    """CloudWatch units used by the contract."""

    COUNT = "Count"
    SECONDS = "Seconds"
    MILLISECONDS = "Milliseconds"
    PERCENT = "Percent"


# Every metric carries these; per-priority and per-type metrics add one more.
BASE_DIMENSIONS: tuple[Dimension, ...] = (Dimension.QUEUE, Dimension.ENVIRONMENT)


@dataclass(frozen=True)
class MetricSpec:
    """One published metric: its name, unit, dimensions and meaning."""

    name: str
    unit: Unit
    description: str
    extra_dimension: Dimension | None = None

    @property
    def dimensions(self) -> tuple[Dimension, ...]:
        """All dimension names of the metric, in publishing order."""
        if self.extra_dimension is None:
            return BASE_DIMENSIONS
        return (*BASE_DIMENSIONS, self.extra_dimension)


QUEUE_DEPTH = MetricSpec("QueueDepth", Unit.COUNT, "Jobs pending (ready to run), all priorities.")
QUEUE_DEPTH_BY_PRIORITY = MetricSpec(
    "QueueDepthByPriority", Unit.COUNT, "Jobs pending at one priority.", Dimension.PRIORITY
)
QUEUE_DEPTH_BY_TYPE = MetricSpec(
    "QueueDepthByType", Unit.COUNT, "Jobs pending of one job type.", Dimension.JOB_TYPE
)
DELAYED_JOBS = MetricSpec("DelayedJobs", Unit.COUNT, "Jobs waiting for a due time or a backoff.")
ACTIVE_JOBS = MetricSpec(
    "ActiveJobs", Unit.COUNT, "Jobs whose code is running on a worker (processing)."
)
RESERVED_JOBS = MetricSpec(
    "ReservedJobs",
    Unit.COUNT,
    "Jobs a worker leased and prefetched but whose code has not started (waiting for a slot).",
)
OLDEST_PENDING_AGE = MetricSpec(
    "OldestPendingAgeSeconds", Unit.SECONDS, "How long the oldest pending job has waited."
)
JOBS_COMPLETED = MetricSpec("JobsCompleted", Unit.COUNT, "Jobs completed during the period.")
JOBS_FAILED = MetricSpec("JobsFailed", Unit.COUNT, "Jobs failed for good during the period.")
JOBS_RETRIED = MetricSpec("JobsRetried", Unit.COUNT, "Failed attempts scheduled for a retry.")
LIVE_WORKERS = MetricSpec("LiveWorkers", Unit.COUNT, "Worker processes with a live heartbeat.")
BACKLOG_PER_WORKER = MetricSpec(
    "BacklogPerWorker",
    Unit.COUNT,
    "QueueDepth / max(LiveWorkers, 1): the target-tracking metric of worker autoscaling.",
)
QUEUE_BACKLOG = MetricSpec(
    "QueueBacklog",
    Unit.COUNT,
    "Pending due jobs plus jobs leased by workers (running or prefetched): what the fleet must "
    "still work through. Delayed jobs are not due, so they are not backlog yet.",
)
LIVE_WORKER_TASKS = MetricSpec(
    "LiveWorkerTasks", Unit.COUNT, "Worker tasks (hosts) with at least one live worker process."
)
BACKLOG_PER_TASK = MetricSpec(
    "BacklogPerTask",
    Unit.COUNT,
    "QueueBacklog / max(LiveWorkerTasks, 1): the target-tracking metric of worker autoscaling.",
)
STALLED_WORKERS = MetricSpec(
    "StalledWorkers",
    Unit.COUNT,
    "Live worker processes whose stall detector says they had room and due jobs but took none.",
)
GROUPS_WITH_BACKLOG = MetricSpec(
    "GroupsWithBacklog",
    Unit.COUNT,
    "Fair-share groups (tenants) with at least one pending job.",
)
LARGEST_GROUP_SHARE = MetricSpec(
    "LargestGroupShare",
    Unit.PERCENT,
    "The largest group's share of all grouped pending jobs, 0-100 (0 with no grouped backlog).",
)
JOB_WAIT_P50 = MetricSpec("JobWaitTimeP50", Unit.MILLISECONDS, "Median enqueue-to-start time.")
JOB_WAIT_P99 = MetricSpec("JobWaitTimeP99", Unit.MILLISECONDS, "99th pct enqueue-to-start time.")
JOB_RUN_P50 = MetricSpec("JobRunTimeP50", Unit.MILLISECONDS, "Median run time of completed jobs.")
JOB_RUN_P99 = MetricSpec("JobRunTimeP99", Unit.MILLISECONDS, "99th pct run time of completed jobs.")
CANARY_LATENCY = MetricSpec(
    "CanaryLatencySeconds",
    Unit.SECONDS,
    "End-to-end time of the canary noop job; published only when the canary is enabled.",
)

ALL_METRICS: tuple[MetricSpec, ...] = (
    QUEUE_DEPTH,
    QUEUE_DEPTH_BY_PRIORITY,
    QUEUE_DEPTH_BY_TYPE,
    DELAYED_JOBS,
    ACTIVE_JOBS,
    RESERVED_JOBS,
    OLDEST_PENDING_AGE,
    JOBS_COMPLETED,
    JOBS_FAILED,
    JOBS_RETRIED,
    LIVE_WORKERS,
    BACKLOG_PER_WORKER,
    QUEUE_BACKLOG,
    LIVE_WORKER_TASKS,
    BACKLOG_PER_TASK,
    STALLED_WORKERS,
    GROUPS_WITH_BACKLOG,
    LARGEST_GROUP_SHARE,
    JOB_WAIT_P50,
    JOB_WAIT_P99,
    JOB_RUN_P50,
    JOB_RUN_P99,
    CANARY_LATENCY,
)
METRICS_BY_NAME: dict[str, MetricSpec] = {m.name: m for m in ALL_METRICS}

# Priority dimension values, as published (the lower-case names clients use).
PRIORITY_DIMENSION_VALUES: tuple[str, ...] = ("low", "normal", "high", "critical")
