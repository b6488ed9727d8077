"""Concurrent single enqueues (`kiq()`, `JobQueue.enqueue`) share `enqueue` script calls
(service/queue/enqueue_batch.py), and each caller still gets its own result or error."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from service.jobs import load_job_types
from service.queue.models import JobSpec
from service.queue.queue import JobQueue
from service.queue.states import JobState
from service.settings import Settings
from service.worker.taskiq_broker import JobQueueBroker
from tests.support.enqueue_calls import EnqueueCalls


def _spec(**fields: Any) -> JobSpec:
    return JobSpec(type="noop", data={"sleep_seconds": 0}, **fields)


async def _pending(queue: JobQueue) -> list[str]:
    ids: list[str] = await queue.redis.zrange(queue.keys.pending, 0, -1)
    return ids


async def test_concurrent_kiq_calls_share_round_trips_and_each_gets_its_own_job(
    queue: JobQueue, redis_url: str
) -> None:
    settings = Settings(redis_url=redis_url, queue_name=queue.keys.queue, key_prefix="jqtest")
    broker = JobQueueBroker(settings, registry=load_job_types())
    await broker.startup()
    try:
        calls = EnqueueCalls(broker.queue.redis, broker.queue)
        noop = broker.find_task("noop")
        assert noop is not None
        tasks = await asyncio.gather(
            *(noop.kiq(data={"progress_steps": i % 5}) for i in range(200))
        )
        # 200 calls in 200 jobs, in far fewer script calls than calls.
        assert sum(calls.jobs_per_call) == 200
        assert len(calls.jobs_per_call) <= 3, calls.jobs_per_call
        ids = [task.task_id for task in tasks]
        assert len(set(ids)) == 200
        assert sorted(await _pending(queue)) == sorted(ids)  # each once, none twice
        for i, job in enumerate(await queue.get_many(ids)):
            assert (job.id, job.data["progress_steps"], job.state) == (
                ids[i], i % 5, JobState.PENDING,
            )  # fmt: skip
        counts = await queue.counts()
        assert counts.by_state[JobState.PENDING] == 200
    finally:
        await broker.shutdown()


async def test_a_lone_enqueue_is_sent_alone_and_later_callers_join_the_next_call(
    queue: JobQueue, redis: Redis
) -> None:
    calls = EnqueueCalls(redis, queue)
    first = await queue.enqueue(_spec())
    assert calls.jobs_per_call == [1]
    calls.gate.clear()
    in_flight = asyncio.create_task(queue.enqueue(_spec()))
    await calls.held.wait()  # the lone call went out at once, without waiting for company
    joined = [asyncio.create_task(queue.enqueue(_spec())) for _ in range(5)]
    await asyncio.sleep(0.01)
    calls.gate.set()
    results = [await in_flight, *[await task for task in joined]]
    assert calls.jobs_per_call == [1, 1, 5]
    assert all(r.created and r.job.state is JobState.PENDING for r in results)
    assert sorted(await _pending(queue)) == sorted([first.job.id, *(r.job.id for r in results)])


async def test_idempotency_collisions_in_one_batch_resolve_per_caller(
    queue: JobQueue, redis: Redis
) -> None:
    calls = EnqueueCalls(redis, queue)
    results = await asyncio.gather(
        queue.enqueue(_spec(idempotency_key="order-1")),
        queue.enqueue(_spec()),
        queue.enqueue(_spec(idempotency_key="order-1")),
        queue.enqueue(_spec(idempotency_key="order-2")),
    )
    assert calls.jobs_per_call == [4]
    first, plain, repeat, other = results
    assert (first.created, plain.created, repeat.created, other.created) == (
        True, True, False, True,
    )  # fmt: skip
    assert repeat.job.id == first.job.id
    assert repeat.job.idempotency_key == "order-1"
    assert sorted(await _pending(queue)) == sorted([first.job.id, plain.job.id, other.job.id])


async def test_a_job_redis_refuses_fails_only_its_own_caller(queue: JobQueue, redis: Redis) -> None:
    # A key of the wrong type where a job hash would be: Redis refuses that one job's HGET.
    bad_id = uuid.uuid4().hex
    await redis.set(queue.keys.job(bad_id), "not a hash")
    calls = EnqueueCalls(redis, queue)
    results = await asyncio.gather(
        queue.enqueue(_spec()),
        queue.enqueue(_spec(), job_id=bad_id),
        queue.enqueue(_spec()),
        return_exceptions=True,
    )
    good_one, refused, good_two = results
    assert isinstance(refused, ResponseError)
    assert "WRONGTYPE" in str(refused)
    assert not isinstance(good_one, BaseException)
    assert not isinstance(good_two, BaseException)
    assert good_one.created and good_two.created
    # The shared call failed after writing the first job; resent one by one, that job is
    # found by its id (created, as its caller's own), the refused one fails alone.
    assert calls.jobs_per_call == [3, 1, 1, 1]
    assert sorted(await _pending(queue)) == sorted([good_one.job.id, good_two.job.id])


async def test_a_cancelled_caller_loses_no_one_elses_job(queue: JobQueue, redis: Redis) -> None:
    calls = EnqueueCalls(redis, queue)
    calls.gate.clear()
    sent = asyncio.create_task(queue.enqueue(_spec()))
    await calls.held.wait()
    waiting = [asyncio.create_task(queue.enqueue(_spec(idempotency_key=f"k{i}"))) for i in range(4)]
    await asyncio.sleep(0.01)  # all four wait for the call in flight
    sent.cancel()  # its call is already on the wire
    waiting[1].cancel()  # not sent yet: taken out of the next call
    await asyncio.sleep(0.01)
    calls.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await sent
    with pytest.raises(asyncio.CancelledError):
        await waiting[1]
    kept = [await waiting[i] for i in (0, 2, 3)]
    assert calls.jobs_per_call == [1, 3]
    assert [r.job.idempotency_key for r in kept] == ["k0", "k2", "k3"]
    pending = await _pending(queue)
    assert len(pending) == 4  # the three waiting ones and the one whose call had gone out
    assert set(pending) >= {r.job.id for r in kept}
    assert not await redis.exists(queue.keys.idempotency_prefix + "k1")
