"""Job states, priorities and the transitions the Lua scripts follow.

Lifecycle: delayed -> pending -> processing -> completed | failed | cancelled. A failed attempt
with attempts left goes back to delayed (its backoff) and then pending; an expired lease
(the worker died) goes straight back to pending. A flow parent starts in waiting-children and
becomes pending (or delayed, until its own due time) when its last child has ended
(docs/queue.md "Flows").
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class JobState(StrEnum):
    """Where a job is in its lifecycle; each state is one sorted set in Redis."""

    DELAYED = "delayed"
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # A flow parent whose children have not all ended; in no pending set, so never dequeued.
    WAITING_CHILDREN = "waiting-children"


TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
CANCELLABLE = frozenset(
    {JobState.DELAYED, JobState.PENDING, JobState.PROCESSING, JobState.WAITING_CHILDREN}
)
RETRYABLE = frozenset({JobState.FAILED, JobState.CANCELLED})

# Every transition a script may make. The scripts are the only writers of `state`; this table
# documents them and the tests check the scripts never leave it.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.DELAYED: frozenset({JobState.PENDING, JobState.CANCELLED}),
    JobState.PENDING: frozenset({JobState.PROCESSING, JobState.CANCELLED}),
    JobState.PROCESSING: frozenset(
        {
            JobState.COMPLETED,
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.DELAYED,  # a failed attempt waiting for its backoff
            JobState.PENDING,  # lease expired or handed back on shutdown
        }
    ),
    JobState.COMPLETED: frozenset(),
    # A flow parent retried with children still open, or re-armed by a retried child, waits.
    JobState.FAILED: frozenset({JobState.PENDING, JobState.WAITING_CHILDREN}),  # manual retry
    JobState.CANCELLED: frozenset({JobState.PENDING, JobState.WAITING_CHILDREN}),  # retry
    JobState.WAITING_CHILDREN: frozenset(
        {
            JobState.PENDING,  # its last child ended
            JobState.DELAYED,  # ... before the parent's own due time
            JobState.FAILED,  # a child failed ("fail")
            JobState.CANCELLED,  # cancelled, or a child failed ("cancel")
        }
    ),
}


class Priority(IntEnum):
    """Named priorities; higher runs first, FIFO within a level."""

    LOW = 5
    NORMAL = 10
    HIGH = 15
    CRITICAL = 20

    @property
    def label(self) -> str:
        """The lower-case name clients use (`low`, `normal`, ...)."""
        return self.name.lower()

    @classmethod
    def parse(cls, value: str | int) -> Priority:
        """Accept a name (`high`) or a level (15); raise ValueError naming the choices."""
        if isinstance(value, str) and not value.isdigit():
            try:
                return cls[value.upper()]
            except KeyError:
                pass
        elif isinstance(value, str | int) and not isinstance(value, bool):
            # Only a name or a whole level: 15.5, true, [15] or {"level": 15} are refused.
            try:
                return cls(int(value))
            except ValueError:
                pass
        choices = ", ".join(f"{p.label}({p.value})" for p in cls)
        raise ValueError(f"unknown priority {value!r}; use one of {choices}")


# Pending score = (PRIORITY_SPAN - priority) * SEQUENCE_SPAN + sequence. ZPOPMIN then yields the
# highest priority first and, within it, the lowest sequence (FIFO). 100 * 2^44 < 2^53, so every
# score is an exact double; 2^44 sequence numbers last 500 years at 1M jobs/s.
PRIORITY_SPAN = 100
SEQUENCE_SPAN = 2**44


def pending_score_range(priority: Priority) -> tuple[int, int]:
    """The [min, max] pending scores of one priority level, for ZCOUNT / ZRANGE BYSCORE."""
    base = (PRIORITY_SPAN - int(priority)) * SEQUENCE_SPAN
    return base, base + SEQUENCE_SPAN - 1
