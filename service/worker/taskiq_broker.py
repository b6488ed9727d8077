"""Our taskiq broker: taskiq's worker, receiver, middlewares and DI on our Redis model.

taskiq-redis's brokers do not fit (DESIGN.md): ListQueueBroker loses a job whose worker dies
(BRPOP), RedisStreamBroker has no priorities and reclaims slow-but-alive jobs, and neither delays
without a scheduler. So `kick` and `listen` go through service.queue's Lua scripts instead, and
acknowledging a message is what records the job's end.
"""

from __future__ import annotations

import functools
import gc
import re
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import datetime
from typing import Any, Literal

from redis.asyncio import Redis
from taskiq import (
    AckableMessage,
    AsyncBroker,
    AsyncResultBackend,
    AsyncTaskiqDecoratedTask,
    TaskiqMiddleware,
)
from taskiq.message import BrokerMessage, TaskiqMessage
from taskiq.result import TaskiqResult

from service.jobs.registry import JobRegistry, JobType
from service.queue.connection import connect, make_queue, queue_config
from service.queue.errors import InvalidRequestError, JobNotFoundError
from service.queue.job_context import current_job
from service.queue.models import FlowEnqueued, JobSpec
from service.queue.options import JobOptions
from service.queue.queue import JobQueue, QueueConfig, build_message
from service.queue.schedules import SCHEDULE_ID_PATTERN, Schedule, ScheduleSpec
from service.queue.states import TERMINAL, JobState
from service.settings import Settings, get_settings
from service.worker.flow_steps import FlowStep, flow_node
from service.worker.protection import ScaleInProtection
from service.worker.result_backends import FinalResultBackend, backend_from_settings
from service.worker.runtime import WorkerRuntime


class JobQueueBroker(AsyncBroker):
    """A taskiq broker whose queue is service.queue (priorities, leases, delays, retries)."""

    def __init__(
        self,
        settings: Settings | None = None,
        protection: ScaleInProtection | None = None,
        registry: JobRegistry | None = None,
    ) -> None:
        super().__init__()
        # The job types it runs (their defaults for kiq() options, their concurrency limits):
        # handed in, so that the queue layer below never reaches for the job registry.
        self.registry = JobRegistry()
        if registry is not None:
            self.use_job_types(registry)
        self.settings = settings or get_settings()
        self.with_result_backend(backend_from_settings(self.settings) or JobResultBackend(self))
        self.with_id_generator(lambda: uuid.uuid4().hex)
        self.protection = protection
        self._redis: Redis | None = None
        self._queue: JobQueue | None = None
        self.runtime: WorkerRuntime | None = None
        self.add_middlewares(JobLifecycleMiddleware(self))

    def use_job_types(self, registry: JobRegistry) -> None:
        """Run `registry`'s job types, each as a taskiq task named after it."""
        self.registry = registry
        for job_type in registry.all():
            if self.find_task(job_type.name) is None:
                self.register_task(_task_for(job_type), task_name=job_type.name)

    def with_result_backend(self, result_backend: AsyncResultBackend[Any]) -> JobQueueBroker:
        """Results through `result_backend` too (taskiq-redis's, say), written with each job's
        final end only; the job record keeps its own copy for the API and the dashboard."""
        if not isinstance(result_backend, JobResultBackend | FinalResultBackend):
            result_backend = FinalResultBackend(self, result_backend)
        super().with_result_backend(result_backend)
        return self

    @property
    def queue(self) -> JobQueue:
        """The queue; available between startup() and shutdown()."""
        if self._queue is None:
            raise RuntimeError("the broker is not started; call `await broker.startup()` first")
        return self._queue

    @property
    def is_started(self) -> bool:
        """Whether startup() has connected the queue."""
        return self._queue is not None

    async def startup(self) -> None:
        """Connect; in a worker process also register the worker and start its loops."""
        self._redis = connect(self.settings)
        self._queue = make_queue(self.settings, self._redis)
        await super().startup()
        if self.is_worker_process:
            await self.queue.set_type_limits(self.registry.concurrency_limits())
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
        queue = self.queue
        spec, body = spec_from_message(message, self.settings, self.registry, queue.config)
        await queue.enqueue_message(message.task_id, spec, body)

    async def enqueue_flow(self, root: FlowStep) -> FlowEnqueued:
        """Enqueue a flow of job-type tasks (service/worker/flow_steps.py), all or nothing:
        children first, each parent once all its children have ended. The ids come back as
        a tree (`.root`) and in a list (`.ids`, root first)."""
        config = self.queue.config
        return await self.queue.enqueue_flow(
            flow_node(root, self.registry, config, taskiq_retry_labels)
        )

    # --- schedules (service/queue/schedules.py) ---------------------------------------------

    async def schedule(
        self,
        task: AsyncTaskiqDecoratedTask[Any, Any] | str,
        schedule_id: str,
        *,
        cron: str | None = None,
        every_seconds: int | None = None,
        timezone: str = "UTC",
        data: dict[str, Any] | None = None,
        start_at: datetime | None = None,
        end_at: datetime | None = None,
        limit: int | None = None,
        misfire: Literal["skip", "run_once"] = "run_once",
        **labels: Any,
    ) -> Schedule:
        """Create or replace schedule `schedule_id`: `task` (the `@broker.task` object or its
        name) with `data`, on `cron` (in `timezone`) or every `every_seconds`; the stored
        Schedule.

        The job is what `task.kicker().with_labels(**labels).kiq(data=data)` would enqueue:
        `labels` over the task's own, read as kiq() labels are (`priority`, `attempts`,
        `timeout`, `backoff`, `delay`, taskiq's `retry_on_error`/`max_retries`). The queue
        fires it, one job per tick, from every API and worker process: no `taskiq scheduler`
        runs. Bad input raises what `PUT /schedules/{id}` answers with a 422: pydantic's
        ValidationError for a bad field, InvalidRequestError when fields disagree or `task` is
        not a job type. A RuntimeError before `await broker.startup()`.
        """
        name = task if isinstance(task, str) else task.task_name
        declared = self.find_task(name) if isinstance(task, str) else task
        own_labels = {} if declared is None else declared.labels
        options = JobOptions.from_labels(taskiq_retry_labels({**own_labels, **labels}))
        spec = ScheduleSpec(
            type=name, data=data or {}, options=options, cron=cron, every_seconds=every_seconds,
            timezone=timezone, start_at=start_at, end_at=end_at, limit=limit, misfire=misfire,
        )  # fmt: skip
        return await self.store_schedule(schedule_id, spec)

    async def store_schedule(self, schedule_id: str, spec: ScheduleSpec) -> Schedule:
        """Create or replace a schedule from its ScheduleSpec: `PUT /schedules/{id}` from
        Python, checked the same way (the id, the job type, its payload, the spec)."""
        queue = self.queue
        if not re.fullmatch(SCHEDULE_ID_PATTERN, schedule_id):
            message = f"a schedule id matches {SCHEDULE_ID_PATTERN}"
            raise InvalidRequestError(
                f"id: {message}", {"errors": [{"field": "id", "in": "path", "message": message}]}
            )
        job = self.registry.schedule_job(spec, queue.config)
        schedule, _ = await queue.put_schedule(schedule_id, spec, job)
        return schedule

    async def unschedule(self, schedule_id: str) -> None:
        """Remove a schedule (jobs it already enqueued stay); ScheduleNotFoundError if none."""
        await self.queue.delete_schedule(schedule_id)

    async def schedules(self) -> list[Schedule]:
        """Every stored schedule, soonest next run first (paused and ended ones last)."""
        return await self.queue.list_schedules()

    async def listen(self) -> AsyncGenerator[bytes | AckableMessage, None]:
        """Jobs for this worker; acking one records its end (see WorkerRuntime.ack)."""
        if self.runtime is None:
            raise RuntimeError("listen() runs in worker processes only")
        async for delivery in self.runtime.deliveries():
            yield AckableMessage(
                data=delivery.message.encode(),
                ack=functools.partial(self.runtime.ack, delivery.job_id),
            )


def _task_for(job_type: JobType) -> Callable[[dict[str, Any]], Awaitable[Any]]:
    async def run(data: dict[str, Any]) -> Any:
        return await job_type.run(data, current_job.get())

    run.__name__ = job_type.name.replace("-", "_")
    run.__doc__ = job_type.description
    return run


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


# The options a JobSpec takes as they are (not the retention forms, which it takes resolved):
# a plain taskiq task, which has no job type to resolve them, keeps these as sent.
AS_SENT_OPTIONS = set(JobOptions.model_fields) & set(JobSpec.model_fields)


# taskiq's retry middlewares retry 3 times unless `max_retries` says otherwise.
TASKIQ_DEFAULT_MAX_RETRIES = 3


def taskiq_retry_labels(labels: dict[str, Any]) -> dict[str, Any]:
    """taskiq's retry labels (`retry_on_error`, `max_retries`, `_retries` of its Simple/Smart
    retry middlewares) as our `attempts`: the runs the task has left. Here the queue retries,
    so a task declared for taskiq-redis keeps its retry policy unchanged."""
    retry = labels.get("retry_on_error")
    if retry is None or "attempts" in labels:
        return labels
    if str(retry).lower() != "true":
        return {**labels, "attempts": 1}
    max_retries = int(labels.get("max_retries", TASKIQ_DEFAULT_MAX_RETRIES))
    done = int(labels.get("_retries", 0))
    return {**labels, "attempts": max(1, max_retries - done + 1)}


def spec_from_message(
    message: BrokerMessage,
    settings: Settings,
    registry: JobRegistry,
    config: QueueConfig | None = None,
) -> tuple[JobSpec, str]:
    """Job options from a kicked message's labels; registered job types get their defaults and
    a canonical message, other taskiq tasks keep theirs as sent. `config` is the queue's, when
    the caller has it (else read from `settings`)."""
    options = JobOptions.from_labels(taskiq_retry_labels(message.labels))
    taskiq_message = TaskiqMessage.model_validate_json(message.message)
    config = config or queue_config(settings)
    if message.task_name in registry.names():
        job_type = registry.get(message.task_name)
        data = taskiq_message.kwargs.get("data", {})
        spec = job_type.build_spec(data, config, options)
        return spec, build_message(message.task_id, spec)
    spec = JobSpec(
        type=message.task_name,
        **options.model_dump(include=AS_SENT_OPTIONS, exclude_none=True),
        keep_completed=config.keep_completed,
        keep_failed=config.keep_failed,
    )
    return spec, message.message.decode()
