"""Plain data of the queue layer: what callers enqueue and what they read back.

Loading and saving live in queue.py; these types never touch Redis.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.queue.states import JobState, Priority

T = TypeVar("T")


class Backoff(BaseModel):
    """How long a failed attempt waits before the next one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["exponential", "fixed"] = "exponential"
    delay_seconds: float = Field(default=1.0, ge=0, le=86_400)
    max_delay_seconds: float = Field(default=300.0, ge=0, le=7 * 86_400)
    # Fraction of the delay that is randomized away, so jobs failing together (a downstream
    # outage) do not all retry in the same instant. 0 = exact delays.
    jitter: float = Field(default=0.2, ge=0, le=1)

    @field_validator("jitter", mode="before")
    @classmethod
    def _jitter_from_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):  # `"jitter": true` reads naturally in JSON
            return 0.5 if value else 0.0
        return value

    def delay_for(self, attempt: int, rand: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        base = self.delay_seconds
        if self.type == "exponential":
            base = self.delay_seconds * 2 ** max(attempt - 1, 0)
        base = min(base, self.max_delay_seconds)
        fraction = random.random() if rand is None else rand  # noqa: S311 - not cryptographic
        return base * (1 - self.jitter * fraction)


class Retention(BaseModel):
    """How many finished jobs to keep and for how long (Bull's removeOnComplete/removeOnFail).

    `count` 0 removes the job as soon as it finishes; None means no limit on that axis.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int | None = Field(default=None, ge=0)
    age_seconds: int | None = Field(default=None, ge=0)

    @classmethod
    def parse(
        cls, value: bool | int | dict[str, Any] | Retention | None, default: Retention
    ) -> Retention:
        """Read Bull's forms: true = remove at once, false = keep all, N = keep the last N,
        {"age": seconds, "count": n} = both limits; None = the default."""
        if value is None:
            return default
        if isinstance(value, Retention):
            return value
        if isinstance(value, bool):
            return cls(count=0) if value else cls()
        if isinstance(value, int):
            return cls(count=value)
        return cls(count=value.get("count"), age_seconds=value.get("age", value.get("age_seconds")))

    def encode(self) -> str:
        """The "count,age" form the Lua scripts read (-1 = unlimited)."""
        count = -1 if self.count is None else self.count
        age = -1 if self.age_seconds is None else self.age_seconds
        return f"{count},{age}"

    @classmethod
    def decode(cls, raw: str) -> Retention:
        """Inverse of encode."""
        count, age = (int(part) for part in raw.split(","))
        return cls(count=None if count < 0 else count, age_seconds=None if age < 0 else age)


class JobSpec(BaseModel):
    """A job to enqueue, with every option resolved (the job type's defaults applied)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    data: dict[str, Any] = Field(default_factory=dict)
    priority: Priority = Priority.NORMAL
    delay_seconds: float = Field(default=0.0, ge=0, le=365 * 86_400)
    attempts: int = Field(default=1, ge=1, le=100)
    backoff: Backoff = Field(default_factory=Backoff)
    timeout_seconds: float | None = Field(default=None, gt=0, le=7 * 86_400)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)
    keep_completed: Retention = Field(default_factory=Retention)
    keep_failed: Retention = Field(default_factory=Retention)


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
    progress: float = 0
    progress_message: str | None = None
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    worker_id: str | None = None
    stalls: int = 0
    idempotency_key: str | None = None
    timeline: list[TimelineEntry] = Field(default_factory=list)


class EnqueueResult(BaseModel):
    """The job an enqueue produced, and whether it is new (False: idempotency key seen)."""

    job: Job
    created: bool


class Page(BaseModel, Generic[T]):
    """One page of a listing; pass `next_cursor` back to get the next one (None: the end)."""

    items: list[T]
    next_cursor: str | None = None


class QueueCounts(BaseModel):
    """Sizes of the queue, each an O(1) or O(log n) read."""

    by_state: dict[JobState, int]
    pending_by_priority: dict[str, int]
    by_type: dict[str, dict[JobState, int]]
    oldest_pending_age_seconds: float


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
