"""One base error with categories; the HTTP layer maps each category to a status in one place."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCategory(StrEnum):
    """What kind of failure an error is, independent of transport."""

    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    INVALID = "invalid"
    UNAVAILABLE = "unavailable"
    # Redis is near its memory limit: new jobs are refused so accepted ones can still finish.
    FULL = "full"


class JobQueueError(Exception):
    """Base of every error the queue layer raises on purpose."""

    category: ErrorCategory = ErrorCategory.INVALID
    code: str = "invalid_request"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class JobNotFoundError(JobQueueError):
    """No job has that id (never existed, or removed by retention)."""

    category = ErrorCategory.NOT_FOUND
    code = "job_not_found"


class UnknownJobTypeError(JobQueueError):
    """No job type is registered under that name."""

    category = ErrorCategory.NOT_FOUND
    code = "unknown_job_type"


class InvalidTransitionError(JobQueueError):
    """The job is in a state the operation does not apply to (e.g. cancel a completed job)."""

    category = ErrorCategory.CONFLICT
    code = "invalid_state"


class InvalidRequestError(JobQueueError):
    """A request's parameters are invalid (e.g. a cursor this API never returned)."""

    category = ErrorCategory.INVALID
    code = "invalid_request"


class InvalidJobError(JobQueueError):
    """The job's options or payload are invalid."""

    category = ErrorCategory.INVALID
    code = "invalid_job"


class QueueUnavailableError(JobQueueError):
    """Redis cannot be reached; nothing was changed."""

    category = ErrorCategory.UNAVAILABLE
    code = "queue_unavailable"


class ConnectionPoolExhaustedError(QueueUnavailableError):
    """Every pooled connection of this process stayed busy for the pool's whole wait: the
    process has more concurrent Redis commands than connections. Redis itself may be healthy;
    nothing was changed."""

    code = "connection_pool_exhausted"


class QueueFullError(JobQueueError):
    """Redis is near (or at) its memory limit: no job was enqueued; retry once workers have
    drained the queue or retention has removed finished jobs.

    `details` has `used_memory_bytes` and `limit_bytes` when the queue's own check refused."""

    category = ErrorCategory.FULL
    code = "queue_full"


class PermanentJobError(Exception):
    """Raised by a job processor: fail this job now, without retrying (e.g. bad input).

    Any other exception is a retryable failure (network, throttling): the job retries after its
    backoff while attempts remain.
    """
