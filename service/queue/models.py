"""Plain data of the queue layer: what callers enqueue and what they read back.

Loading and saving live in queue.py; these types never touch Redis.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from service.queue.options import (
    Attempts,
    Backoff,
    Dedupe,
    DelaySeconds,
    GroupName,
    IdempotencyKey,
    Retention,
    TimeoutSeconds,
)
from service.queue.states import JobState, Priority

# Backoff and Retention are defined with the other job options (options.py); importable from
# here too, where the stored job's other types live.
__all__ = [
    "Backoff",
    "ChildState",
    "EnqueueResult",
    "FlowChildren",
    "FlowEnqueued",
    "FlowJob",
    "FlowNode",
    "Job",
    "JobSpec",
    "MemoryUsage",
    "Page",
    "QueueCounts",
    "Retention",
    "TimelineEntry",
    "WorkerInfo",
    "from_ms",
]

T = TypeVar("T")


class JobSpec(BaseModel):
    """A job to enqueue, with every option resolved (the job type's defaults applied)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    data: dict[str, Any] = Field(default_factory=dict)
    priority: Priority = Priority.NORMAL
    delay_seconds: DelaySeconds = 0.0
    attempts: Attempts = 1
    backoff: Backoff = Field(default_factory=Backoff)
    timeout_seconds: TimeoutSeconds | None = None
    idempotency_key: IdempotencyKey | None = None
    keep_completed: Retention = Field(default_factory=Retention)
    keep_failed: Retention = Field(default_factory=Retention)
    dedupe: Dedupe | None = None
    group: GroupName | None = None


# What a flow parent does when a child fails for good (no attempt left) or is cancelled: fail
# with the child's error, run anyway with the failure recorded, or be cancelled with its
# siblings that have not started (docs/queue.md "Flows").
OnChildFailure = Literal["fail", "ignore", "cancel"]


class FlowNode(BaseModel):
    """One job of a flow to enqueue, and the jobs that must end before it runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: JobSpec
    on_child_failure: OnChildFailure = "fail"
    children: list[FlowNode] = Field(default_factory=list)


class FlowJob(BaseModel):
    """One job an enqueued flow made, with the jobs made for its children."""

    id: str
    type: str
    state: JobState
    children: list[FlowJob] = Field(default_factory=list)


class FlowEnqueued(BaseModel):
    """An enqueued flow: the tree of its jobs, and every id (root first, parents before their
    children)."""

    root: FlowJob
    ids: list[str]


class ChildState(BaseModel):
    """A flow child as its parent sees it; `state` None once the child was deleted."""

    id: str
    state: JobState | None


class FlowChildren(BaseModel):
    """A flow parent's children, their results (completed ones) and errors (failed or
    cancelled ones), by child id."""

    children: list[ChildState]
    results: dict[str, Any]
    failures: dict[str, str]


class TimelineEntry(BaseModel):
    """One state change of a job."""

    state: JobState
    at: datetime
    note: str | None = None


class Job(BaseModel):
    """Everything the queue knows about one job."""

    id: str
    type: str
    state: JobState
    priority: Priority
    data: dict[str, Any]
    attempts_made: int
    max_attempts: int
    backoff: Backoff | None = None
    timeout_seconds: float | None = None
    created_at: datetime
    scheduled_for: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Leased (state processing) but its attempt's code has not started: prefetched by a worker.
    reserved: bool = False
    progress: float = 0
    progress_message: str | None = None
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    worker_id: str | None = None
    stalls: int = 0
    idempotency_key: str | None = None
    group: str | None = None
    timeline: list[TimelineEntry] = Field(default_factory=list)
    # Flows: the parent's id (a child), and for a parent its children not ended yet and what a
    # child's failure does to it; None for a job outside any flow.
    parent_id: str | None = None
    waiting_for: int | None = None
    on_child_failure: OnChildFailure | None = None


class EnqueueResult(BaseModel):
    """The job an enqueue produced, and whether it is new (False: idempotency key seen, or
    `deduplicated`: its dedupe key led to an existing job, which a debounce updated)."""

    job: Job
    created: bool
    deduplicated: bool = False


class Page(BaseModel, Generic[T]):
    """One page of a listing; pass `next_cursor` back to get the next one (None: the end)."""

    items: list[T]
    next_cursor: str | None = None


class QueueCounts(BaseModel):
    """Sizes of the queue, each an O(1) or O(log n) read.

    As read from Redis, `by_state[processing]` is every leased job (the active set) and
    `reserved` is 0; `with_running` splits the leased jobs into those whose code runs and those
    a worker prefetched (see docs/queue.md, "Processing and reserved").
    """

    by_state: dict[JobState, int]
    pending_by_priority: dict[str, int]
    by_type: dict[str, dict[JobState, int]]
    oldest_pending_age_seconds: float
    # Leased jobs whose code has not started: prefetched, waiting in a worker for a free slot.
    reserved: int = 0
    # The same per type (types with none are left out).
    reserved_by_type: dict[str, int] = Field(default_factory=dict)

    def with_running(
        self, running: int, running_by_type: Mapping[str, int] | None = None
    ) -> QueueCounts:
        """These counts with the leased jobs split: `running` of them (the workers' heartbeats
        say so) stay processing, the rest are reserved; per type likewise with
        `running_by_type`. A heartbeat is up to a period old, so each running count is clamped
        to the leased jobs it splits. Without `running_by_type` (workers older than it) by_type
        keeps counting every leased job as processing."""
        leased = self.by_state.get(JobState.PROCESSING, 0) + self.reserved
        processing = max(0, min(running, leased))
        by_state = {**self.by_state, JobState.PROCESSING: processing}
        by_type, reserved_by_type = self.by_type, self.reserved_by_type
        if running_by_type is not None:
            by_type, reserved_by_type = {}, {}
            for job_type, row in self.by_type.items():
                type_leased = row.get(JobState.PROCESSING, 0) + self.reserved_by_type.get(
                    job_type, 0
                )
                type_running = max(0, min(running_by_type.get(job_type, 0), type_leased))
                by_type[job_type] = {**row, JobState.PROCESSING: type_running}
                if type_leased > type_running:
                    reserved_by_type[job_type] = type_leased - type_running
        return self.model_copy(
            update={
                "by_state": by_state,
                "reserved": leased - processing,
                "by_type": by_type,
                "reserved_by_type": reserved_by_type,
            }
        )


class WorkerInfo(BaseModel):
    """A live worker process, from its heartbeat."""

    id: str
    host: str
    pid: int
    started_at: datetime
    last_heartbeat: datetime
    processed: int
    failed: int
    concurrency: int
    current_jobs: list[str]
    # Held jobs whose code has started (running, or its end being recorded), and held jobs
    # prefetched but not started; a worker older than these fields reports its running ids only.
    running: int = 0
    reserved: int = 0
    # `running` per job type; None from a worker older than this field.
    running_by_type: dict[str, int] | None = None
    # The worker's own stall detector: it had room, due jobs were pending and it took none for
    # a while. `stalled` is the verdict at the last heartbeat; `stalls` counts them since start.
    stalled: bool = False
    stalls: int = 0


class MemoryUsage(BaseModel):
    """Redis memory against its limit (INFO memory), and the point where enqueues stop."""

    used_bytes: int
    # Redis's maxmemory; 0 = none set (the server grows until its host runs out).
    max_bytes: int
    # Enqueues are refused above this (ENQUEUE_MAX_MEMORY_SHARE of maxmemory); 0 = never.
    enqueue_limit_bytes: int

    @classmethod
    def of(cls, used: int, maxmemory: int, share: float) -> MemoryUsage:
        """The reading for `used` of `maxmemory` with enqueues refused above `share` of it."""
        limit = int(maxmemory * share) if maxmemory and share > 0 else 0
        return cls(used_bytes=used, max_bytes=maxmemory, enqueue_limit_bytes=limit)

    @property
    def refusing_enqueues(self) -> bool:
        """Whether an enqueue now would be refused for memory."""
        return bool(self.enqueue_limit_bytes) and self.used_bytes > self.enqueue_limit_bytes


def from_ms(value: str | int | float | None) -> datetime | None:
    """A Redis millisecond timestamp as an aware UTC datetime."""
    if value is None or value == "":
        return None
    return datetime.fromtimestamp(int(float(value)) / 1000, tz=UTC)
