"""Our taskiq broker: taskiq's worker, receiver, middlewares and DI on our Redis model.

taskiq-redis's brokers do not fit (DESIGN.md): ListQueueBroker loses a job whose worker dies
(BRPOP), RedisStreamBroker has no priorities and reclaims slow-but-alive jobs, and neither delays
without a scheduler. So `kick` and `listen` go through service.queue's Lua scripts instead, and
acknowledging a message is what records the job's end.
"""

from __future__ import annotations

import functools
import gc
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from redis.asyncio import Redis
from taskiq import AckableMessage, AsyncBroker, AsyncResultBackend, TaskiqMiddleware
from taskiq.message import BrokerMessage, TaskiqMessage
from taskiq.result import TaskiqResult

from service.jobs.registry import REGISTRY
from service.queue.connection import connect, make_queue, queue_config
from service.queue.errors import JobNotFoundError
from service.queue.models import Backoff, JobSpec
from service.queue.queue import JobQueue, build_message
from service.queue.runtime import ScaleInProtection, WorkerRuntime
from service.queue.states import TERMINAL, JobState, Priority
from service.settings import Settings, get_settings


class JobQueueBroker(AsyncBroker):
    """A taskiq broker whose queue is service.queue (priorities, leases, delays, retries)."""

    def __init__(
        self, settings: Settings | None = None, protection: ScaleInProtection | None = None
    ) -> None:
        super().__init__()
        self.with_result_backend(JobResultBackend(self))
        self.with_id_generator(lambda: uuid.uuid4().hex)
        self.settings = settings or get_settings()
        self.protection = protection
        self._redis: Redis | None = None
        self._queue: JobQueue | None = None
        self.runtime: WorkerRuntime | None = None
        self.add_middlewares(JobLifecycleMiddleware(self))

    @property
    def queue(self) -> JobQueue:
        """The queue; available between startup() and shutdown()."""
        if self._queue is None:
            raise RuntimeError("the broker is not started; call `await broker.startup()` first")
        return self._queue

    async def startup(self) -> None:
        """Connect; in a worker process also register the worker and start its loops."""
        self._redis = connect(self.settings)
        self._queue = make_queue(self.settings, self._redis)
        await super().startup()
        if self.is_worker_process:
            await self.queue.set_type_limits(REGISTRY.concurrency_limits())
            self.runtime = WorkerRuntime(self.queue, self.settings, self.protection)
            await self.runtime.start()
            # What exists now (modules, job types, pydantic schemas) lives as long as the
            # process. Frozen, it is never walked again by the collector, whose full passes
            # otherwise cost a busy worker about a tenth of its throughput (docs/benchmarks.md).
            gc.collect()
            gc.freeze()

    async def shutdown(self) -> None:
        """Hand back unfinished jobs (workers), then disconnect."""
        if self.runtime is not None:
            await self.runtime.stop()
        await super().shutdown()
        if self._redis is not None:
            await self._redis.aclose()

    async def kick(self, message: BrokerMessage) -> None:
        """Enqueue a message sent with `task.kiq(...)`; its labels carry the job options."""
        spec, body = spec_from_message(message, self.settings)
        await self.queue.enqueue_message(message.task_id, spec, body)

    async def listen(self) -> AsyncGenerator[bytes | AckableMessage, None]:
        """Jobs for this worker; acking one records its end (see WorkerRuntime.ack)."""
        if self.runtime is None:
            raise RuntimeError("listen() runs in worker processes only")
        async for delivery in self.runtime.deliveries():
            yield AckableMessage(
                data=delivery.message.encode(),
                ack=functools.partial(self.runtime.ack, delivery.job_id),
            )


class JobLifecycleMiddleware(TaskiqMiddleware):
    """Tells the worker runtime when a job's code starts and what it returned or raised."""

    def __init__(self, broker: JobQueueBroker) -> None:
        super().__init__()
        self._broker = broker

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        """Remember the running task (to cancel it) and set the job's context."""
        if self._broker.runtime is not None:
            self._broker.runtime.on_start(message)
        return message

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        """Keep the result for the ack that follows."""
        if self._broker.runtime is not None:
            self._broker.runtime.on_result(message.task_id, result)


class JobResultBackend(AsyncResultBackend[Any]):
    """Results live on the job itself (written with its final state); this reads them back so
    `await (await task.kiq(...)).wait_result()` works."""

    def __init__(self, broker: JobQueueBroker) -> None:
        self._broker = broker

    async def set_result(self, task_id: str, result: TaskiqResult[Any]) -> None:
        """Nothing to do: the finish script stores the result atomically with the state."""

    async def is_result_ready(self, task_id: str) -> bool:
        """Whether the job has ended."""
        try:
            return (await self._broker.queue.get(task_id)).state in TERMINAL
        except JobNotFoundError:
            return False

    async def get_result(self, task_id: str, with_logs: bool = False) -> TaskiqResult[Any]:
        """The job's result (or its error) as a TaskiqResult."""
        job = await self._broker.queue.get(task_id)
        failed = job.state is not JobState.COMPLETED
        elapsed = 0.0
        if job.started_at and job.finished_at:
            elapsed = (job.finished_at - job.started_at).total_seconds()
        return TaskiqResult(
            is_err=failed,
            return_value=None if failed else job.result,
            execution_time=elapsed,
            error=RuntimeError(job.error or job.state.value) if failed else None,
            log=None,
        )


def spec_from_message(message: BrokerMessage, settings: Settings) -> tuple[JobSpec, str]:
    """Job options from a kicked message's labels; registered job types get their defaults and
    a canonical message, other taskiq tasks keep theirs as sent."""
    labels = {key: value for key, value in message.labels.items() if value is not None}
    options: dict[str, Any] = {
        "priority": Priority.parse(labels["priority"]) if "priority" in labels else None,
        "delay_seconds": float(labels.get("delay", 0)),
        "attempts": int(labels["attempts"]) if "attempts" in labels else None,
        "backoff": Backoff.model_validate_json(labels["backoff"]) if "backoff" in labels else None,
        "timeout_seconds": float(labels["timeout"]) if "timeout" in labels else None,
        "idempotency_key": labels.get("idempotency_key"),
    }
    taskiq_message = TaskiqMessage.model_validate_json(message.message)
    config = queue_config(settings)
    if message.task_name in REGISTRY.names():
        job_type = REGISTRY.get(message.task_name)
        data = taskiq_message.kwargs.get("data", {})
        spec = job_type.build_spec(data, config, **options)

        return spec, build_message(message.task_id, spec)
    spec = JobSpec(
        type=message.task_name,
        **{key: value for key, value in options.items() if value is not None},
        keep_completed=config.keep_completed,
        keep_failed=config.keep_failed,
    )
    return spec, message.message.decode()
