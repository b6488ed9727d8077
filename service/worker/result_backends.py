"""Result backends beside the job record: taskiq-redis's, for code that reads results that way.

The job record (written by the finish script with the job's final state) stays the source of
truth for the API, the dashboard and `JobResultBackend`. A team coming from taskiq-redis may
also keep reading results where `RedisAsyncResultBackend` keeps them (RESULT_BACKEND, or
`broker.with_result_backend(...)`): `FinalResultBackend` writes there only a job's last word,
as taskiq's retry middlewares do (`no_result_on_retry`), so `wait_result()` never returns the
error of an attempt that is about to be retried.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskiq import AsyncResultBackend
from taskiq.depends.progress_tracker import TaskProgress
from taskiq.result import TaskiqResult
from taskiq_redis import RedisAsyncClusterResultBackend, RedisAsyncResultBackend

from service.queue.job_context import current_job
from service.settings import Settings
from service.worker.finishing import outcome_of

if TYPE_CHECKING:
    from service.worker.taskiq_broker import JobQueueBroker


def backend_from_settings(settings: Settings) -> AsyncResultBackend[Any] | None:
    """The taskiq-redis result backend RESULT_BACKEND names; None for the job record alone."""
    if settings.result_backend == "queue":
        return None
    backend_class = (
        RedisAsyncClusterResultBackend
        if settings.result_backend == "taskiq-redis-cluster"
        else RedisAsyncResultBackend
    )
    backend: AsyncResultBackend[Any] = backend_class(
        settings.result_backend_url or settings.resolved_redis_url(),
        result_ex_time=settings.result_ex_time,
        prefix_str=settings.result_key_prefix,
    )
    return backend


class FinalResultBackend(AsyncResultBackend[Any]):
    """Another taskiq result backend, written with a job's final result only."""

    def __init__(self, broker: JobQueueBroker, inner: AsyncResultBackend[Any]) -> None:
        self._broker = broker
        self.inner = inner

    async def startup(self) -> None:
        """Start the backend it writes to."""
        await self.inner.startup()

    async def shutdown(self) -> None:
        """Close the backend it writes to."""
        await self.inner.shutdown()

    async def set_result(self, task_id: str, result: TaskiqResult[Any]) -> None:
        """Write the result, unless the job is about to be retried (its next attempt writes)."""
        if not self._will_retry(task_id):
            await self.inner.set_result(task_id, result)

    def _will_retry(self, task_id: str) -> bool:
        # taskiq writes results before the ack that records the job's end, so this asks the
        # same question the finish script will: a retryable failure with attempts left.
        runtime = self._broker.runtime
        job = current_job.get(None)
        held = runtime.held.get(task_id) if runtime is not None else None
        if held is None or job is None or job.job_id != task_id:
            return False
        outcome = outcome_of(held)
        return not outcome.completed and outcome.retry_delay_ms >= 0 and not job.is_last_attempt

    async def is_result_ready(self, task_id: str) -> bool:
        """Whether the backend holds the task's result."""
        return await self.inner.is_result_ready(task_id)

    async def get_result(self, task_id: str, with_logs: bool = False) -> TaskiqResult[Any]:
        """The task's result as the backend keeps it."""
        return await self.inner.get_result(task_id, with_logs=with_logs)

    async def set_progress(self, task_id: str, progress: TaskProgress[Any]) -> None:
        """taskiq's ProgressTracker: written to the backend as it is."""
        await self.inner.set_progress(task_id, progress)

    async def get_progress(self, task_id: str) -> TaskProgress[Any] | None:
        """What taskiq's ProgressTracker last wrote."""
        return await self.inner.get_progress(task_id)
