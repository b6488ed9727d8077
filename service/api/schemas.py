"""Wire models of the HTTP API, split by role: what clients send (create) and what they read
(public). The queue layer's models stay internal; `JobPublic.from_job` is the one translation
(the queue calls it `state`, the API answers `status`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.jobs.registry import JobType
from service.metrics.collector import QueueSnapshot
from service.queue.flow_control import FlowState, LaneLimits
from service.queue.flows import MAX_FLOW_CHILDREN
from service.queue.models import FlowChildren, FlowJob, Job, OnChildFailure, WorkerInfo
from service.queue.options import (
    Attempts,
    Backoff,
    Dedupe,
    DelaySeconds,
    GroupName,
    IdempotencyKey,
    JobOptions,
    RetentionAge,
    RetentionCount,
    TimeoutSeconds,
    option_limits,
)
from service.queue.states import JobState, Priority

PriorityName = Literal["low", "normal", "high", "critical"]
MAX_BULK = 1000
JOB_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
# A type name in a path is only bounded like the body's `type`: any name that is not registered,
# well-formed or not, is the same 404 listing the known types.
JOB_TYPE_MAX_LENGTH = 64


# Strict wire models: `true` is not a number and "5" is not an integer here. Lax coercion would
# accept requests the published schema forbids, and clients would come to depend on it.
STRICT = ConfigDict(extra="forbid", strict=True)


class RetentionIn(BaseModel):
    """Keep at most `count` finished jobs like this one, each for at most `age` seconds."""

    model_config = STRICT

    count: RetentionCount | None = None
    age: RetentionAge | None = None


# Bull's forms: true = remove at once, false = keep, N = keep the last N, {count, age}.
RetentionOption = bool | RetentionCount | RetentionIn


class BackoffIn(Backoff):
    """How long a failed attempt waits before the next one: the queue's Backoff, strict."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    # In the schema as JSON clients may send it (the queue's model reads a bool the same way).
    jitter: float | bool = Backoff.model_fields["jitter"]  # type: ignore[assignment]


class DedupeIn(Dedupe):
    """Deduplication by a key of the caller's: the queue's Dedupe, strict."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class JobOptionsIn(BaseModel):
    """A job's own options: the fields and limits of service.queue.options.JobOptions, in the
    API's JSON forms."""

    model_config = STRICT

    priority: PriorityName | None = Field(
        default=None, description="Default: the job type's, `normal` unless it says otherwise."
    )
    delay_seconds: DelaySeconds = 0.0
    attempts: Attempts | None = Field(default=None, description="Runs allowed, counting the first.")
    backoff: BackoffIn | None = None
    idempotency_key: IdempotencyKey | None = Field(
        default=None,
        description="A key seen before returns the existing job (200) instead of a new one.",
    )
    remove_on_complete: RetentionOption | None = None
    remove_on_fail: RetentionOption | None = None
    timeout_seconds: TimeoutSeconds | None = None
    dedupe: DedupeIn | None = Field(
        default=None,
        description="A key seen within its window returns the existing job (200, "
        "`deduplicated`): `throttle`, `debounce` (the newer call replaces the waiting job) "
        "or `until_done` (while the first job has not ended).",
    )
    group: GroupName | None = Field(
        default=None,
        description="A tenant or other fair share (1-128 bytes, no control characters): within "
        "a priority, workers take jobs round robin across the groups with pending work.",
        examples=["tenant-42"],
    )

    def to_options(self) -> JobOptions:
        """The queue layer's JobOptions for this request."""
        return JobOptions(
            priority=Priority.parse(self.priority) if self.priority else None,
            delay_seconds=self.delay_seconds,
            attempts=self.attempts,
            backoff=Backoff.model_validate(self.backoff.model_dump()) if self.backoff else None,
            timeout_seconds=self.timeout_seconds,
            idempotency_key=self.idempotency_key,
            remove_on_complete=_retention(self.remove_on_complete),
            remove_on_fail=_retention(self.remove_on_fail),
            dedupe=Dedupe.model_validate(self.dedupe.model_dump()) if self.dedupe else None,
            group=self.group,
        )


class EnqueueOptions(JobOptionsIn):
    """A job to enqueue when its type is in the path (`POST /{type}/enqueue`): its data and
    its options."""

    data: dict[str, Any] = Field(
        default_factory=dict, description="The payload; validated by the job type's model."
    )


def _retention(value: RetentionOption | None) -> bool | int | dict[str, Any] | None:
    """A retention option in the form `Retention.parse` reads."""
    if isinstance(value, RetentionIn):
        return value.model_dump(exclude_none=True)
    return value


class EnqueueRequest(EnqueueOptions):
    """A job to enqueue (`POST /jobs/enqueue`)."""

    type: str = Field(min_length=1, max_length=JOB_TYPE_MAX_LENGTH, examples=["noop"])


def non_unicode_fields(data: dict[str, Any], prefix: str = "data") -> list[str]:
    """Dotted paths in `data` whose key or text holds a lone surrogate (`"\\ud800"`).

    JSON may escape one and Python's parser accepts it, but such a string has no UTF-8 form,
    so it could be neither stored nor sent back. Typed fields refuse it already; this covers
    the free-form parts of a payload (`Any`, `dict[str, Any]`). Iterative, so a deeply nested
    payload cannot exhaust the stack.
    """
    bad: list[str] = []
    stack: list[tuple[str, Any]] = [(prefix, data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}"
                if not _is_unicode(str(key)):
                    bad.append(f"{path}.{key!r}")
                else:
                    stack.append((child, item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{index}", item) for index, item in enumerate(value))
        elif isinstance(value, str) and not _is_unicode(value):
            bad.append(path)
    return sorted(bad)


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class BulkEnqueueRequest(BaseModel):
    """Up to 1,000 jobs, enqueued in one Redis round trip after all of them validated."""

    model_config = STRICT

    jobs: list[EnqueueRequest] = Field(min_length=1, max_length=MAX_BULK)


class FlowNodeIn(BaseModel):
    """One job of a flow (`POST /flows`) and the jobs that must end before it runs."""

    model_config = STRICT

    type: str = Field(min_length=1, max_length=JOB_TYPE_MAX_LENGTH, examples=["noop"])
    data: dict[str, Any] = Field(
        default_factory=dict, description="The payload; validated by the job type's model."
    )
    options: JobOptionsIn = Field(
        default_factory=JobOptionsIn,
        description="As for one job, except `idempotency_key` and `dedupe` (refused: 422).",
    )
    on_child_failure: OnChildFailure = Field(
        default="fail",
        description="When a child fails with no attempt left, or is cancelled: `fail` this job "
        "with the child's error, `ignore` it (this job runs; the failure is recorded), or "
        "`cancel` this job and its children that have not started.",
    )
    children: list[FlowNodeIn] = Field(
        default_factory=list,
        max_length=MAX_FLOW_CHILDREN,
        description="Jobs that run first, in parallel, each by its own priority.",
    )


class FlowJobPublic(BaseModel):
    """One job a flow made, with the jobs made for its children."""

    id: str
    type: str
    status: JobState
    children: list[FlowJobPublic]

    @classmethod
    def from_flow_job(cls, job: FlowJob) -> FlowJobPublic:
        """The public view of one enqueued flow job (iterative: no depth can overflow)."""
        root = cls(id=job.id, type=job.type, status=job.state, children=[])
        stack = [(job, root)]
        while stack:
            source, target = stack.pop()
            for child in source.children:
                made = cls(id=child.id, type=child.type, status=child.state, children=[])
                target.children.append(made)
                stack.append((child, made))
        return root


class FlowEnqueuedPublic(BaseModel):
    """An enqueued flow: the tree of its jobs, each with its id, and every id (the root first,
    parents before their children)."""

    root: FlowJobPublic
    ids: list[str]


class ChildPublic(BaseModel):
    """A flow child as its parent lists it; `status` null once the child was deleted."""

    id: str
    status: JobState | None


class JobPublic(BaseModel):
    """A job's status, as `GET /jobs/{id}/status` and the lists answer it."""

    id: str
    type: str
    status: JobState
    priority: PriorityName
    attempts_made: int = Field(description="Runs started so far.")
    max_attempts: int = Field(description="Runs allowed, counting the first.")
    progress: float = Field(ge=0, le=100)
    created_at: datetime
    scheduled_for: datetime
    started_at: datetime | None = Field(
        description="When its code first started; null while it has not (pending, delayed, "
        "or reserved)."
    )
    finished_at: datetime | None
    reserved: bool = Field(
        default=False,
        description="Status processing, but only leased: a worker prefetched it and its code "
        "has not started yet.",
    )
    result: Any = Field(default=None, description="The job's return value once completed.")
    error: str | None = Field(default=None, description="Why the last attempt failed.")
    group: str | None = Field(default=None, description="Its fair-share group, if any.")

    @classmethod
    def from_job(cls, job: Job) -> JobPublic:
        """The public view of a queue-layer job."""
        return cls(**_public_fields(job))


def _public_fields(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "type": job.type,
        "status": job.state,
        "priority": Priority(job.priority).label,
        "attempts_made": job.attempts_made,
        "max_attempts": job.max_attempts,
        "progress": min(max(job.progress, 0.0), 100.0),
        "created_at": job.created_at,
        "scheduled_for": job.scheduled_for,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "reserved": job.reserved,
        "result": job.result,
        "error": job.error,
        "group": job.group,
    }


class EnqueuedJob(JobPublic):
    """A job an enqueue produced; `created` is false when its idempotency key was seen or its
    dedupe key led to an existing job (`deduplicated`)."""

    created: bool
    deduplicated: bool = False

    @classmethod
    def from_result(cls, job: Job, created: bool, deduplicated: bool = False) -> EnqueuedJob:
        """The public view of a job an enqueue returned."""
        return cls(**_public_fields(job), created=created, deduplicated=deduplicated)


class TimelineEntryPublic(BaseModel):
    """One state change."""

    status: JobState
    at: datetime
    note: str | None = None


class JobDetail(JobPublic):
    """Everything about a job: payload, options, traceback, logs and its state changes."""

    data: dict[str, Any]
    progress_message: str | None
    traceback: str | None
    backoff: Backoff | None
    timeout_seconds: float | None
    idempotency_key: str | None
    worker_id: str | None
    stalls: int = Field(description="Times its worker vanished and the job was handed back.")
    logs: list[str]
    timeline: list[TimelineEntryPublic]
    parent_id: str | None = Field(default=None, description="Its flow parent, if any.")
    on_child_failure: OnChildFailure | None = Field(
        default=None, description="A flow parent's answer to a child's failure."
    )
    waiting_for: int | None = Field(
        default=None, description="A flow parent's children that have not ended yet."
    )
    children: list[ChildPublic] | None = Field(
        default=None, description="A flow parent's children, in posted order, with their status."
    )
    children_results: dict[str, Any] | None = Field(
        default=None, description="Child id -> result, for each completed child."
    )
    children_failures: dict[str, str] | None = Field(
        default=None, description="Child id -> error, for each failed or cancelled child."
    )

    @classmethod
    def from_job_and_logs(
        cls, job: Job, logs: list[str], children: FlowChildren | None = None
    ) -> JobDetail:
        """The detailed view of a job with its newest log lines (and a flow parent's
        children)."""
        flow: dict[str, Any] = {}
        if children is not None:
            flow = {
                "children": [ChildPublic(id=c.id, status=c.state) for c in children.children],
                "children_results": children.results,
                "children_failures": children.failures,
            }
        return cls(
            **flow,
            parent_id=job.parent_id,
            on_child_failure=job.on_child_failure,
            waiting_for=job.waiting_for,
            **_public_fields(job),
            data=job.data,
            progress_message=job.progress_message,
            traceback=job.traceback,
            backoff=job.backoff,
            timeout_seconds=job.timeout_seconds,
            idempotency_key=job.idempotency_key,
            worker_id=job.worker_id,
            stalls=job.stalls,
            logs=logs,
            timeline=[
                TimelineEntryPublic(status=e.state, at=e.at, note=e.note) for e in job.timeline
            ],
        )


class ProgressPublic(BaseModel):
    """How far a job is."""

    id: str
    status: JobState
    progress: float = Field(ge=0, le=100)
    message: str | None
    logs: list[str] = Field(description="The newest log lines, oldest first.")


class JobPage(BaseModel):
    """One page of jobs; pass `next_cursor` as `cursor` for the next (null: the last page)."""

    items: list[JobPublic]
    next_cursor: str | None


class BulkEnqueueResponse(BaseModel):
    """The jobs of a bulk enqueue, in request order."""

    items: list[EnqueuedJob]
    created: int = Field(description="How many are new (the rest had a known idempotency key).")


class StatsPublic(BaseModel):
    """Queue sizes, recent throughput and latency."""

    counts: dict[JobState, int] = Field(
        description="Jobs per status; `processing` counts only jobs whose code is running."
    )
    reserved: int = Field(
        description="Jobs a worker leased and prefetched whose code has not started yet."
    )
    pending_by_priority: dict[str, int]
    by_type: dict[str, dict[JobState, int]] = Field(
        description="Jobs per type and status; `processing` as in `counts`."
    )
    reserved_by_type: dict[str, int] = Field(
        description="`reserved` per type (types with none left out)."
    )
    oldest_pending_age_seconds: float
    throughput_last_minute: dict[str, int] = Field(
        description="Jobs completed, failed and retried in the last 60 s (sliding estimate)."
    )
    live_workers: int
    backlog_per_worker: float
    wait_p50_ms: float = Field(description="Queue wait of recently completed jobs.")
    wait_p99_ms: float
    run_p50_ms: float = Field(description="Run time of recently completed jobs.")
    run_p99_ms: float
    taken_at: datetime
    paused: bool = Field(description="The whole queue is paused: no job starts.")
    paused_types: list[str] = Field(description="Job types paused: none of their jobs start.")

    @classmethod
    def from_snapshot(cls, snap: QueueSnapshot) -> StatsPublic:
        """Stats from the metrics collector's snapshot (the numbers CloudWatch gets too)."""
        return cls(
            counts=snap.counts.by_state,
            reserved=snap.reserved,
            pending_by_priority=snap.counts.pending_by_priority,
            by_type=snap.counts.by_type,
            reserved_by_type=snap.counts.reserved_by_type,
            oldest_pending_age_seconds=snap.counts.oldest_pending_age_seconds,
            throughput_last_minute=snap.throughput_last_minute,
            live_workers=snap.live_workers,
            backlog_per_worker=snap.backlog_per_worker,
            wait_p50_ms=snap.wait_p50_ms,
            wait_p99_ms=snap.wait_p99_ms,
            run_p50_ms=snap.run_p50_ms,
            run_p99_ms=snap.run_p99_ms,
            taken_at=snap.taken_at,
            paused=snap.flow.queue_paused,
            paused_types=sorted(snap.flow.paused_lanes),
        )


class WorkerPublic(BaseModel):
    """A live worker process.

    Its fields repeat the queue's WorkerInfo on purpose: this is the API's contract, the other
    what workers store, so a field a heartbeat gains is published only when added here.
    """

    id: str
    host: str
    pid: int
    started_at: datetime
    last_heartbeat: datetime
    processed: int
    failed: int
    concurrency: int
    current_jobs: list[str] = Field(description="Ids of the jobs whose code runs now.")
    running: int = Field(
        description="Jobs whose code has started (running, or its end being recorded)."
    )
    reserved: int = Field(description="Jobs it prefetched whose code has not started yet.")
    stalled: bool = Field(description="its stall detector found it idle with due jobs pending")
    stalls: int = Field(description="stalls its detector found (and restarted) since it started")

    @classmethod
    def from_info(cls, info: WorkerInfo) -> WorkerPublic:
        """The public view of a worker heartbeat."""
        return cls.model_validate(info.model_dump())


class WorkersPublic(BaseModel):
    """Live workers, oldest first."""

    items: list[WorkerPublic]


class CheckPublic(BaseModel):
    """One health check."""

    name: str
    status: Literal["healthy", "degraded", "unhealthy"]
    detail: str
    value: float | None = None


class HealthPublic(BaseModel):
    """Overall health: the worst status of the checks."""

    status: Literal["healthy", "degraded", "unhealthy"]
    checks: list[CheckPublic]


class JobTypeDefaultsPublic(BaseModel):
    """What a job of this type gets unless it says otherwise."""

    priority: PriorityName
    attempts: int
    backoff: Backoff
    timeout_seconds: float | None
    concurrency: int | None = Field(description="Max running at once across all workers.")


class RateLimitPublic(BaseModel):
    """At most `limit` starts in any window of `per_seconds`, across all workers."""

    limit: int
    per_seconds: float


class LimitsPublic(BaseModel):
    """The limits in force: set through the API, else declared on the job type in code."""

    rate: RateLimitPublic | None
    concurrency: int | None

    @classmethod
    def from_limits(cls, limits: LaneLimits) -> LimitsPublic:
        rate = limits.rate
        return cls(
            rate=None
            if rate is None
            else RateLimitPublic(limit=rate.limit, per_seconds=rate.per_seconds),
            concurrency=limits.concurrency,
        )


class JobTypePublic(BaseModel):
    """A job type clients can enqueue."""

    name: str
    description: str
    defaults: JobTypeDefaultsPublic
    payload_schema: dict[str, Any] = Field(description="JSON schema of `data`.")
    paused: bool = Field(description="No job of this type starts while true.")
    limits: LimitsPublic

    @classmethod
    def from_type(cls, job_type: JobType, flow: FlowState) -> JobTypePublic:
        """The public view of a registered job type and its flow settings."""
        d = job_type.defaults
        return cls(
            name=job_type.name,
            paused=job_type.name in flow.paused_lanes,
            limits=LimitsPublic.from_limits(flow.limits_of(job_type.name)),
            description=job_type.description,
            defaults=JobTypeDefaultsPublic(
                priority=Priority(d.priority).label,
                attempts=d.attempts,
                backoff=d.backoff,
                timeout_seconds=d.timeout_seconds,
                concurrency=d.concurrency,
            ),
            payload_schema=job_type.payload_model.model_json_schema(),
        )


class JobTypesPublic(BaseModel):
    """Registered job types, by name, and the limits of the options a job may set."""

    items: list[JobTypePublic]
    option_limits: dict[str, dict[str, float]] = Field(
        default_factory=option_limits,
        description="Bounds of each job option (JSON-schema keywords), as the API checks them.",
    )


class Liveness(BaseModel):
    """The process is up."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Redis answers."""

    status: Literal["ready"]
    redis_latency_ms: float
