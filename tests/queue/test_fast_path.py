"""What the receiver's fast path (service/worker/fast_path.py) must not change: it is taken only
when nothing configured needs taskiq's full callback, and a job on it behaves as on that one.

Each test either runs a job on the fast path and checks a semantic it keeps (timeouts, the
job's context, cancellation, ends written at shutdown), or configures one thing that needs the
full callback (a middleware, a result backend, a dependency) and checks that it still runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from taskiq import (
    AsyncResultBackend,
    Context,
    TaskiqDepends,
    TaskiqMessage,
    TaskiqMiddleware,
    TaskiqResult,
)

from service.queue.consumer import Outcome
from service.queue.job_context import JobContext, current_job
from service.queue.models import JobSpec
from service.queue.queue import JobQueue
from service.queue.states import JobState
from service.worker.fast_path import FastPath
from service.worker.receiver import JobReceiver
from service.worker.taskiq_broker import JobQueueBroker
from tests.queue.test_receiver import (
    Listening,
    all_completed,
    states,
    until,
)


def _taken(broker: JobQueueBroker, *, expected: bool) -> None:
    """Guards each test's premise: which path the configured broker takes."""
    assert FastPath(JobReceiver(broker, max_async_tasks=10)).broker_allows() is expected


async def test_a_plain_job_on_the_fast_path_gets_its_context_and_its_result_kept(
    broker_factory: Callable[..., JobQueueBroker], queue: JobQueue
) -> None:
    broker = broker_factory()
    _taken(broker, expected=True)
    seen: list[JobContext] = []

    @broker.task(task_name="context")
    async def context(data: dict[str, Any]) -> dict[str, Any]:
        seen.append(current_job.get())
        return {"echo": data}

    job_id = (await queue.enqueue(JobSpec(type="context", data={"n": 1}, attempts=3))).job.id
    listening = Listening(JobReceiver(broker, max_async_tasks=10))
    await until(lambda: all_completed(queue, [job_id]))
    await listening.stop()
    assert (await queue.get(job_id)).result == {"echo": {"n": 1}}
    assert [(c.job_id, c.attempt, c.max_attempts) for c in seen] == [(job_id, 1, 3)]


async def test_a_job_over_its_timeout_fails_with_the_timeout_on_the_fast_path(
    broker_factory: Callable[..., JobQueueBroker], queue: JobQueue
) -> None:
    broker = broker_factory()
    _taken(broker, expected=True)

    @broker.task(task_name="sleepy")
    async def sleepy(data: dict[str, Any]) -> None:
        await asyncio.sleep(30)

    spec = JobSpec(type="sleepy", timeout_seconds=0.2, attempts=1)
    job_id = (await queue.enqueue(spec)).job.id
    listening = Listening(JobReceiver(broker, max_async_tasks=10))
    await until(lambda: _in_state(queue, job_id, JobState.FAILED))
    await listening.stop()
    assert (await queue.get(job_id)).error == "job exceeded its timeout of 0.2 s"


async def test_a_middleware_still_sees_every_hook_including_post_save(
    broker_factory: Callable[..., JobQueueBroker], queue: JobQueue
) -> None:
    broker = broker_factory()
    hooks: list[str] = []

    class Recording(TaskiqMiddleware):
        def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
            hooks.append("pre_execute")
            return message

        def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
            hooks.append("post_execute")

        def post_save(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
            hooks.append("post_save")

    broker.add_middlewares(Recording())
    _taken(broker, expected=False)

    @broker.task(task_name="plain")
    async def plain(data: dict[str, Any]) -> int:
        return 7

    job_id = (await queue.enqueue(JobSpec(type="plain"))).job.id
    listening = Listening(JobReceiver(broker, max_async_tasks=10))
    await until(lambda: all_completed(queue, [job_id]))
    await listening.stop()
    assert hooks == ["pre_execute", "post_execute", "post_save"]
    assert (await queue.get(job_id)).result == 7


class RecordingBackend(AsyncResultBackend[Any]):
    """A configured result backend: keeps what taskiq writes to it."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}

    async def set_result(self, task_id: str, result: TaskiqResult[Any]) -> None:
        self.results[task_id] = result.return_value

    async def is_result_ready(self, task_id: str) -> bool:
        return task_id in self.results

    async def get_result(self, task_id: str, with_logs: bool = False) -> TaskiqResult[Any]:
        raise NotImplementedError


async def test_a_configured_result_backend_is_still_written(
    broker_factory: Callable[..., JobQueueBroker], queue: JobQueue
) -> None:
    broker = broker_factory()
    backend = RecordingBackend()
    broker.with_result_backend(backend)
    _taken(broker, expected=False)

    @broker.task(task_name="kept")
    async def kept(data: dict[str, Any]) -> str:
        return "kept"

    job_id = (await queue.enqueue(JobSpec(type="kept"))).job.id
    listening = Listening(JobReceiver(broker, max_async_tasks=10))
    await until(lambda: all_completed(queue, [job_id]))
    await listening.stop()
    assert backend.results == {job_id: "kept"}


async def test_dependencies_declared_with_taskiq_depends_still_resolve_without_middleware(
    broker_factory: Callable[..., JobQueueBroker], queue: JobQueue
) -> None:
    broker = broker_factory()
    _taken(broker, expected=True)  # the broker allows it; the task's dependency does not

    def tenant() -> str:
        return "acme"

    @broker.task(task_name="injected")
    async def injected(
        data: dict[str, Any],
        context: Context = TaskiqDepends(),  # noqa: B008 - taskiq's DI idiom
        who: str = TaskiqDepends(tenant),
    ) -> str:
        return f"{who}:{context.message.task_id}"

    job_id = (await queue.enqueue(JobSpec(type="injected"))).job.id
    listening = Listening(JobReceiver(broker, max_async_tasks=10))
    await until(lambda: all_completed(queue, [job_id]))
    await listening.stop()
    assert (await queue.get(job_id)).result == f"acme:{job_id}"


async def test_a_job_cancelled_while_its_end_is_batched_ends_cancelled(
    broker_factory: Callable[..., JobQueueBroker], queue: JobQueue
) -> None:
    broker = broker_factory()
    ran: list[str] = []

    @broker.task(task_name="quick")
    async def quick(data: dict[str, Any]) -> None:
        ran.append("ran")

    await broker.startup()
    assert broker.runtime is not None
    batcher = broker.runtime._batcher
    real_finish_many, cancelled = batcher._finish_many, asyncio.Event()
    submitted: list[str] = []

    async def finish_after_the_cancel(outcomes: list[Outcome]) -> list[int]:
        submitted.extend(outcome.job_id for outcome in outcomes)
        await cancelled.wait()
        return await real_finish_many(outcomes)

    batcher._finish_many = finish_after_the_cancel  # type: ignore[method-assign]
    job_id = (await queue.enqueue(JobSpec(type="quick"))).job.id
    listening = Listening(JobReceiver(broker, max_async_tasks=10, run_startup=False))
    await until(lambda: _is(submitted, [job_id]))
    await queue.cancel(job_id)
    cancelled.set()
    await until(lambda: _let_go(broker))
    await listening.stop()
    assert ran == ["ran"]
    assert (await queue.get(job_id)).state == JobState.CANCELLED


async def test_ends_still_being_written_at_shutdown_are_recorded_not_handed_back(
    broker_factory: Callable[..., JobQueueBroker], queue: JobQueue
) -> None:
    # On the fast path a job's task ends before its end is written; shutdown must still wait
    # for that write (within the grace), or stop() would hand a finished job back to pending
    # and it would run twice.
    broker = broker_factory()
    runs: list[str] = []

    @broker.task(task_name="once")
    async def once(data: dict[str, Any]) -> None:
        runs.append("run")

    await broker.startup()
    assert broker.runtime is not None
    batcher = broker.runtime._batcher
    real_finish_many, stopping = batcher._finish_many, asyncio.Event()

    async def finish_once_stopping(outcomes: list[Outcome]) -> list[int]:
        await stopping.wait()
        await asyncio.sleep(0.2)
        return await real_finish_many(outcomes)

    batcher._finish_many = finish_once_stopping  # type: ignore[method-assign]
    ids = [r.job.id for r in await queue.enqueue_many([JobSpec(type="once")] * 3)]
    receiver = JobReceiver(broker, max_async_tasks=10, run_startup=False, wait_tasks_timeout=10)
    listening = Listening(receiver)
    await until(lambda: _is(runs, ["run"] * 3))
    listening.finish.set()
    stopping.set()
    await asyncio.wait_for(listening.task, 30)
    await broker.runtime.stop()
    assert await states(queue, ids) == [JobState.COMPLETED] * 3
    assert runs == ["run"] * 3


async def _in_state(queue: JobQueue, job_id: str, state: JobState) -> bool:
    return (await queue.get(job_id)).state == state


async def _is(items: list[str], expected: list[str]) -> bool:
    return items == expected


async def _let_go(broker: JobQueueBroker) -> bool:
    return broker.runtime is not None and not broker.runtime.held
