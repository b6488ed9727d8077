"""What a running job's code can do: report progress, append log lines, know its attempt."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

from service.queue.consumer import Consumer
from service.queue.queue import JobQueue


@dataclass
class JobContext:
    """Handed to a job processor alongside its payload."""

    job_id: str
    job_type: str
    attempt: int
    max_attempts: int
    consumer: Consumer

    async def progress(self, percent: float, message: str = "") -> None:
        """Record progress (0-100) and an optional message; live listeners see it at once."""
        percent = min(100.0, max(0.0, float(percent)))
        await self.consumer.progress(self.job_id, percent, message)

    async def log(self, line: str) -> None:
        """Append a line to the job's log (kept capped; the oldest lines drop off)."""
        await self.consumer.log(self.job_id, line)

    async def children_results(self) -> dict[str, Any]:
        """For a flow parent: child id -> result of each completed child (a child that failed
        under `on_child_failure: "ignore"` is absent; `queue.children(job_id).failures` has its
        error). Empty for a job outside any flow. One HGETALL."""
        return await self.consumer.queue.children_results(self.job_id)

    @property
    def queue(self) -> JobQueue:
        """The queue the job runs on (read-only use: counts, listings)."""
        return self.consumer.queue

    @property
    def is_last_attempt(self) -> bool:
        """Whether a failure now fails the job for good."""
        return self.attempt >= self.max_attempts


# Set by the worker for the task running one job; read by job_type's wrapper.
current_job: contextvars.ContextVar[JobContext] = contextvars.ContextVar("current_job")
