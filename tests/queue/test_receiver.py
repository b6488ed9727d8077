"""JobReceiver, the batch receiver `jobqueue worker` runs, in-process on a real queue.

The worker-process tests (test_worker_processes.py) run it end to end through `run_workers`;
these pin what it must keep of taskiq's stock receiver (middlewares, dependency injection,
limits, --max-tasks-per-child) and how it stops.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from taskiq import Context, TaskiqDepends, TaskiqMessage, TaskiqMiddleware, TaskiqResult

from service.queue.consumer import FinishStatus, Outcome
from service.queue.models import JobSpec
from service.queue.queue import JobQueue, build_message, now_ms
from service.queue.states import JobState
from service.settings import Settings
from service.worker.finishing import FinishBatcher
from service.worker.receiver import JobReceiver
from service.worker.taskiq_broker import JobQueueBroker
from tests.support.state import assert_consistent


class Listening:
    """`receiver.listen()` running in a task, with its finish event."""

    def __init__(self, receiver: JobReceiver) -> None:
        self.finish = asyncio.Event()
        self.task = asyncio.create_task(receiver.listen(self.finish))

    async def stop(self, within: float = 30) -> None:
        self.finish.set()
        await asyncio.wait_for(self.task, within)


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def states(queue: JobQueue, ids: list[str]) -> list[JobState]:
    return [job.state for job in await queue.get_many(ids)]


async def all_completed(queue: JobQueue, ids: list[str]) -> bool:
    return set(await states(queue, ids)) == {JobState.COMPLETED}


class Gauge:
    """Counts jobs running at once."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    async def hold(self, seconds: float) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.now -= 1


@pytest.mark.parametrize(
    ("concurrency", "receiver_limit", "expected_peak"), [(3, 100, 3), (5, 2, 2)]
)
async def test_running_jobs_never_exceed_the_lower_of_both_limits(
    broker_factory: Callable[..., JobQueueBroker],
    queue: JobQueue,
    concurrency: int,
    receiver_limit: int,
    expected_peak: int,
) -> None:
    broker = broker_factory(worker_concurrency=concurrency)
    gauge = Gauge()

    @broker.task(task_name="gauged")
    async def gauged(data: dict[str, Any]) -> None:
        await gauge.hold(0.05)

    ids = [r.job.id for r in await queue.enqueue_many([JobSpec(type="gauged")] * 20)]
    listening = Listening(JobReceiver(broker, max_async_tasks=receiver_limit))
    await until(lambda: all_completed(queue, ids))
    await listening.stop()
    assert gauge.peak == expected_peak


async def test_a_slot_frees_when_the_code_ends_while_its_end_is_still_being_written(
    broker_factory: Callable[..., JobQueueBroker], queue: JobQueue
) -> None:
    broker = broker_factory(worker_concurrency=1, worker_prefetch=0)
    started: list[str] = []

    @broker.task(task_name="recorded")
    async def recorded(data: dict[str, Any], context: Context = TaskiqDepends()) -> None:  # noqa: B008
        started.append(context.message.task_id)

    await broker.startup()
    assert broker.runtime is not None
    batcher = broker.runtime._batcher
    real_finish_many, writes_done = batcher._finish_many, asyncio.Event()

    async def slow_finish_many(outcomes: list[Outcome]) -> list[int]:
        await writes_done.wait()
        return await real_finish_many(outcomes)

    batcher._finish_many = slow_finish_many  # type: ignore[method-assign]
    ids = [r.job.id for r in await queue.enqueue_many([JobSpec(type="recorded")] * 4)]
    listening = Listening(JobReceiver(broker, max_async_tasks=10, run_startup=False))
    await until(lambda: _at_least(started, 2))
    await asyncio.sleep(0.3)
    # The second job ran while the first one's end was still unwritten; but no more than one
    # concurrency's worth of ending jobs is let off, so a stalled Redis write bounds holdings.
    assert len(started) == 2
    assert (await states(queue, ids)).count(JobState.PROCESSING) == 2
    writes_done.set()
    await until(lambda: all_completed(queue, ids))
    await listening.stop()
    assert sorted(started) == sorted(ids)


async def _at_least(items: list[str], count: int) -> bool:
    return len(items) >= count


async def test_taskiq_middlewares_and_dependency_injection_still_apply(
    broker_factory: Callable[..., JobQueueBroker], queue: JobQueue
) -> None:
    broker = broker_factory()
    seen: list[tuple[str, str]] = []

    class Recording(TaskiqMiddleware):
        def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
            seen.append(("pre", message.task_id))
            return message

        def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
            seen.append(("post", message.task_id))

    broker.add_middlewares(Recording())

    @broker.task(task_name="whoami")
    async def whoami(
        data: dict[str, Any],
        context: Context = TaskiqDepends(),  # noqa: B008 - taskiq's DI idiom
    ) -> str:
        return context.message.task_id

    job_id = (await queue.enqueue(JobSpec(type="whoami"))).job.id
    listening = Listening(JobReceiver(broker, max_async_tasks=10))
    await until(lambda: all_completed(queue, [job_id]))
    await listening.stop()
    assert (await queue.get(job_id)).result == job_id
    assert seen == [("pre", job_id), ("post", job_id)]


async def test_an_idle_receiver_stops_at_once_though_it_blocks_for_longer(
    broker_factory: Callable[..., JobQueueBroker], queue: JobQueue, redis: Redis
) -> None:
    # Blocking on the wake-up marker for up to 20 s: only a cancelled wait stops it in time.
    broker = broker_factory(idle_block_seconds=20)
    listening = Listening(JobReceiver(broker, max_async_tasks=10))
    await until(lambda: _registered(redis, queue))
    await asyncio.sleep(0.3)  # now blocked in BZPOPMIN
    started = time.monotonic()
    await listening.stop(within=5)
    assert time.monotonic() - started < 2


async def test_jobs_the_shutdown_wake_takes_go_back_to_pending_untouched(
    broker_factory: Callable[..., JobQueueBroker], queue: JobQueue, redis: Redis
) -> None:
    # The idle wait takes jobs in the same round trip as it wakes, so at shutdown it is woken
    # (not cancelled) and may take some: they must be handed back, not left leased.
    broker = broker_factory(idle_block_seconds=20)

    @broker.task(task_name="never-run")
    async def never_run(data: dict[str, Any]) -> None:
        raise AssertionError("a job taken at shutdown must not run")

    listening = Listening(JobReceiver(broker, max_async_tasks=10))
    await until(lambda: _registered(redis, queue))
    await asyncio.sleep(0.3)  # now blocked
    # A job arrives without waking anyone, so only the shutdown wake can be what takes it.
    job_id = await _enqueue_without_wake_up(queue, JobSpec(type="never-run"))
    await asyncio.sleep(0.3)
    assert (await queue.get(job_id)).state is JobState.PENDING
    await listening.stop(within=5)
    await broker.shutdown()
    job = await queue.get(job_id)
    assert (job.state, job.attempts_made, job.stalls) == (JobState.PENDING, 0, 0)
    # It was taken by the wake and handed back, not merely left alone:
    assert [entry.state for entry in job.timeline] == [
        JobState.PENDING,
        JobState.PROCESSING,
        JobState.PENDING,
    ]
    assert int(await redis.zcard(queue.keys.active)) == 0
    await assert_consistent(redis, queue.keys)


async def _enqueue_without_wake_up(queue: JobQueue, spec: JobSpec) -> str:
    """Enqueue and delete the wake-up marker in one transaction: blocked workers are served
    only after it, when there is no marker left to pop."""
    job_id = uuid.uuid4().hex
    pipe = queue.redis.pipeline(transaction=True)
    message = build_message(job_id, spec)
    args, per_job = queue._enqueue_call([(job_id, spec, message)], now_ms(time.time))
    queue.scripts.add_to(pipe, "enqueue", args, per_job)
    pipe.delete(queue.keys.marker)
    await pipe.execute()
    return job_id


async def test_max_tasks_per_child_ends_the_receiver_and_the_rest_go_back_to_pending(
    broker_factory: Callable[..., JobQueueBroker], queue: JobQueue, redis: Redis
) -> None:
    broker = broker_factory(worker_concurrency=2, worker_prefetch=4)

    @broker.task(task_name="quick")
    async def quick(data: dict[str, Any]) -> None:
        await asyncio.sleep(0.01)

    ids = [r.job.id for r in await queue.enqueue_many([JobSpec(type="quick")] * 12)]
    receiver = JobReceiver(broker, max_async_tasks=2, max_tasks_to_execute=5)
    await asyncio.wait_for(receiver.listen(asyncio.Event()), 20)  # returns by itself
    await broker.shutdown()  # as taskiq does next: hands back what was prefetched
    counted = await states(queue, ids)
    assert counted.count(JobState.COMPLETED) == 5
    assert counted.count(JobState.PENDING) == 7
    await assert_consistent(redis, queue.keys)


async def test_a_redis_error_while_taking_jobs_is_retried_not_fatal(
    broker_factory: Callable[..., JobQueueBroker], queue: JobQueue
) -> None:
    broker = broker_factory()

    @broker.task(task_name="after-outage")
    async def after_outage(data: dict[str, Any]) -> str:
        return "ran"

    await broker.startup()
    assert broker.runtime is not None
    runtime = broker.runtime
    real_refill = runtime.refill
    failures = [RedisConnectionError("Connection closed by server.")]

    async def flaky_refill() -> int | None:
        if failures:
            raise failures.pop()
        return await real_refill()

    runtime.refill = flaky_refill  # type: ignore[method-assign]
    job_id = (await queue.enqueue(JobSpec(type="after-outage"))).job.id
    listening = Listening(JobReceiver(broker, max_async_tasks=10, run_startup=False))
    await until(lambda: all_completed(queue, [job_id]))
    await listening.stop()
    assert not failures
    assert (await queue.get(job_id)).result == "ran"


class RecordingProtection:
    """Stands in for ECS task protection (tested against a fake agent in tests/worker)."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, bool]] = []

    async def update(self, busy: bool) -> None:
        self.calls.append((time.monotonic(), busy))

    async def release(self) -> None:
        self.released_at = len(self.calls)

    async def aclose(self) -> None:
        pass

    released_at: int | None = None


async def test_taking_work_protects_the_task_at_once_not_at_the_next_heartbeat(
    redis_url: str, queue: JobQueue
) -> None:
    protection = RecordingProtection()
    broker = JobQueueBroker(
        Settings(
            redis_url=redis_url,
            queue_name=queue.keys.queue,
            key_prefix="jqtest",
            heartbeat_seconds=60,
            heartbeat_ttl_seconds=120,
        ),
        protection=protection,
    )
    broker.is_worker_process = True
    release = asyncio.Event()

    @broker.task(task_name="held")
    async def held(data: dict[str, Any]) -> None:
        await release.wait()

    listening = Listening(JobReceiver(broker, max_async_tasks=10))
    try:
        await until(lambda: _told(protection, busy=False))  # the start-up heartbeat: idle
        enqueued = time.monotonic()
        job_id = (await queue.enqueue(JobSpec(type="held"))).job.id
        await until(lambda: _told(protection, busy=True), timeout=5)
        assert protection.calls[-1][0] - enqueued < 2  # the next heartbeat is a minute away
        release.set()
        await until(lambda: all_completed(queue, [job_id]))
    finally:
        release.set()
        await listening.stop()
        await broker.shutdown()
    # Cleared on the way out: the stop is a shutdown signal, so by release(), and nothing
    # protected the task again after it.
    assert protection.released_at == len(protection.calls)


async def test_a_shutdown_signal_releases_protection_while_running_jobs_drain(
    redis_url: str, queue: JobQueue
) -> None:
    protection = RecordingProtection()
    broker = JobQueueBroker(
        Settings(redis_url=redis_url, queue_name=queue.keys.queue, key_prefix="jqtest"),
        protection=protection,
    )
    broker.is_worker_process = True
    release = asyncio.Event()

    @broker.task(task_name="draining")
    async def draining(data: dict[str, Any]) -> None:
        await release.wait()

    receiver = JobReceiver(broker, max_async_tasks=10, wait_tasks_timeout=30)
    listening = Listening(receiver)
    try:
        job_id = (await queue.enqueue(JobSpec(type="draining"))).job.id
        await until(lambda: _told(protection, busy=True), timeout=5)
        listening.finish.set()  # what taskiq does on SIGTERM
        await until(lambda: _released(protection), timeout=5)
        assert (await queue.get(job_id)).state is JobState.PROCESSING  # still draining
        told_before_release = protection.released_at
        await broker.runtime._heartbeat()  # type: ignore[union-attr]  # a beat during the drain
        release.set()
        await asyncio.wait_for(listening.task, 30)
    finally:
        release.set()
        await broker.shutdown()
    assert (await queue.get(job_id)).state is JobState.COMPLETED
    # Nothing re-protected the task after the release, the drain's heartbeat included.
    assert protection.calls[told_before_release or 0 :] == []


async def _released(protection: RecordingProtection) -> bool:
    return protection.released_at is not None


async def _told(protection: RecordingProtection, busy: bool) -> bool:
    return bool(protection.calls) and protection.calls[-1][1] is busy


async def _registered(redis: Redis, queue: JobQueue) -> bool:
    return int(await redis.zcard(queue.keys.workers)) > 0


async def test_a_finish_that_meets_a_redis_blip_is_retried_not_dropped() -> None:
    # The job ran; if recording its end failed at once, it would be run again after its lease.
    sent: list[list[Outcome]] = []
    blips = [RedisConnectionError("Connection closed by server.")]

    async def finish_many(outcomes: list[Outcome]) -> list[int]:
        sent.append(outcomes)
        if blips:
            raise blips.pop()
        return [FinishStatus.COMPLETED] * len(outcomes)

    batcher = FinishBatcher(finish_many)
    status = await batcher.submit(Outcome("job-1", completed=True, payload="null"))
    assert status == FinishStatus.COMPLETED
    assert [[o.job_id for o in batch] for batch in sent] == [["job-1"], ["job-1"]]


async def test_a_job_whose_end_redis_refuses_is_let_go_and_runs_again(
    broker_factory: Callable[..., JobQueueBroker], queue: JobQueue
) -> None:
    # Kept, its lease would be renewed for good and the job stay `processing` (issue 12): let
    # go, its lease lapses (the lease keeper no longer renews it) and the sweeper re-runs it.
    broker = broker_factory(lease_seconds=1, sweep_interval_seconds=0.2)
    runs: list[int] = []

    @broker.task(task_name="refused-once")
    async def refused_once(data: dict[str, Any]) -> int:
        runs.append(len(runs) + 1)
        return len(runs)

    await broker.startup()
    assert broker.runtime is not None
    batcher = broker.runtime._batcher
    real_finish_many = batcher._finish_many

    async def refusing_finish_many(outcomes: list[Outcome]) -> list[int]:
        if len(runs) == 1:
            raise ResponseError("OOM command not allowed when used memory > 'maxmemory'.")
        return await real_finish_many(outcomes)

    batcher._finish_many = refusing_finish_many  # type: ignore[method-assign]
    job_id = (await queue.enqueue(JobSpec(type="refused-once"))).job.id
    listening = Listening(JobReceiver(broker, max_async_tasks=10, run_startup=False))
    await until(lambda: all_completed(queue, [job_id]), timeout=30)
    await listening.stop()
    job = await queue.get(job_id)
    assert runs == [1, 2]
    assert (job.result, job.stalls) == (2, 1)  # the second run's; the first lost its lease
    assert not broker.runtime.held
