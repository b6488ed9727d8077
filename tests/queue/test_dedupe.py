"""Deduplication by key (throttle, debounce, until_done) through the queue layer, on a real
server: concurrent enqueues of one key, the job's data and delay, the key's Redis state."""

from __future__ import annotations

import asyncio
import json

import pytest
from redis.asyncio import Redis
from taskiq.message import TaskiqMessage

from service.queue.consumer import Consumer, Outcome
from service.queue.keys import QueueKeys
from service.queue.models import EnqueueResult, JobSpec
from service.queue.options import Dedupe
from service.queue.queue import JobQueue
from service.queue.states import JobState
from tests.support.clock import SettableClock
from tests.support.state import assert_consistent, assert_no_leaked_keys

CONCURRENT = 20


def dedupe_spec(mode: str, n: int = 0, ttl: float | None = 60, **kwargs: object) -> JobSpec:
    dedupe = Dedupe(key="report-42", mode=mode, ttl_seconds=ttl)  # type: ignore[arg-type]
    return JobSpec(type="noop", data={"n": n}, dedupe=dedupe, **kwargs)  # type: ignore[arg-type]


async def enqueue_concurrently(queue: JobQueue, specs: list[JobSpec]) -> list[EnqueueResult]:
    return list(await asyncio.gather(*(queue.enqueue(s) for s in specs)))


async def job_ids(redis: Redis, keys: QueueKeys) -> set[str]:
    return {k[len(keys.job_prefix) :] async for k in redis.scan_iter(match=keys.job_prefix + "*")}


async def assert_state(queue: JobQueue, expected_jobs: int) -> None:
    """The queue's sets agree with the jobs, and the dedupe key is the only extra key."""
    assert len(await job_ids(queue.redis, queue.keys)) == expected_jobs
    await assert_consistent(queue.redis, queue.keys)
    await assert_no_leaked_keys(queue.redis, queue.keys, {queue.keys.dedupe_prefix + "report-42"})


@pytest.mark.parametrize("mode", ["throttle", "until_done"])
async def test_concurrent_enqueues_of_one_key_make_exactly_one_job(
    queue: JobQueue, mode: str
) -> None:
    results = await enqueue_concurrently(queue, [dedupe_spec(mode, n) for n in range(CONCURRENT)])
    first = [r for r in results if r.created]
    assert len(first) == 1
    assert {r.job.id for r in results} == {first[0].job.id}
    assert sum(r.deduplicated for r in results) == CONCURRENT - 1
    assert await queue.redis.get(queue.keys.dedupe_prefix + "report-42") == first[0].job.id
    assert (await queue.get(first[0].job.id)).data == first[0].job.data
    await assert_state(queue, 1)


async def test_throttle_holds_for_the_ttl_then_lets_a_new_job_in(queue: JobQueue) -> None:
    first = await queue.enqueue(dedupe_spec("throttle", ttl=0.2))
    ttl_ms = await queue.redis.pttl(queue.keys.dedupe_prefix + "report-42")
    assert 0 < ttl_ms <= 200
    again = await queue.enqueue(dedupe_spec("throttle", 1, ttl=0.2))
    assert (again.created, again.deduplicated, again.job.id) == (False, True, first.job.id)
    await asyncio.sleep(0.3)  # the window is a Redis TTL, on the server's own clock
    later = await queue.enqueue(dedupe_spec("throttle", 2, ttl=0.2))
    assert later.created and later.job.id != first.job.id
    await assert_state(queue, 2)


async def test_throttle_returns_the_first_job_even_after_it_finished(clocked: JobQueue) -> None:
    first = await clocked.enqueue(dedupe_spec("throttle"))
    consumer = Consumer(clocked, "w1", 30)
    await consumer.dequeue(1)
    await consumer.finish_many([Outcome(first.job.id, True, "null")])
    again = await clocked.enqueue(dedupe_spec("throttle", 1))
    assert again.deduplicated and again.job.state is JobState.COMPLETED


async def test_until_done_lets_a_new_job_in_once_the_first_completed(clocked: JobQueue) -> None:
    first = await clocked.enqueue(dedupe_spec("until_done", ttl=None))
    key = clocked.keys.dedupe_prefix + "report-42"
    assert await clocked.redis.pttl(key) == -1  # no ttl given: held until the job ends
    consumer = Consumer(clocked, "w1", 30)
    [taken], _ = await consumer.dequeue(1)
    running = await enqueue_concurrently(
        clocked, [dedupe_spec("until_done", n, ttl=None) for n in range(CONCURRENT)]
    )
    assert all(r.deduplicated and r.job.id == first.job.id for r in running)
    assert running[0].job.state is JobState.PROCESSING

    await consumer.finish_many([Outcome(taken.job_id, True, "null")])
    assert not await clocked.redis.exists(key)
    after = await enqueue_concurrently(
        clocked, [dedupe_spec("until_done", n, ttl=None) for n in range(CONCURRENT)]
    )
    [second] = [r for r in after if r.created]
    assert second.job.id != first.job.id
    assert await clocked.redis.get(key) == second.job.id
    await assert_state(clocked, 2)


@pytest.mark.parametrize("end", ["failed", "cancelled"])
async def test_until_done_lets_a_new_job_in_after_any_end(clocked: JobQueue, end: str) -> None:
    first = await clocked.enqueue(dedupe_spec("until_done"))
    if end == "cancelled":
        await clocked.cancel(first.job.id)
    else:
        consumer = Consumer(clocked, "w1", 30)
        await consumer.dequeue(1)
        await consumer.finish_many([Outcome(first.job.id, False, "boom", "", -1)])
    assert (await clocked.get(first.job.id)).state.value == end
    second = await clocked.enqueue(dedupe_spec("until_done", 1))
    assert second.created and second.job.id != first.job.id


async def test_until_done_ttl_is_a_safety_bound(queue: JobQueue) -> None:
    first = await queue.enqueue(dedupe_spec("until_done", ttl=0.1))
    await asyncio.sleep(0.2)
    second = await queue.enqueue(dedupe_spec("until_done", 1, ttl=0.1))
    assert second.created and second.job.id != first.job.id


async def test_debounce_keeps_one_job_with_the_last_calls_data_and_a_fresh_delay(
    clocked: JobQueue, clock: SettableClock
) -> None:
    specs = [dedupe_spec("debounce", n, delay_seconds=10) for n in range(CONCURRENT)]
    results = await enqueue_concurrently(clocked, specs)
    [job_id] = {r.job.id for r in results}
    assert sum(r.created for r in results) == 1
    clock.now += 5
    last = await clocked.enqueue(dedupe_spec("debounce", 99, delay_seconds=10))
    assert (last.created, last.deduplicated, last.job.id) == (False, True, job_id)
    job = await clocked.get(job_id)
    assert job.data == {"n": 99}
    assert job.state is JobState.DELAYED
    due_ms = await clocked.redis.zscore(clocked.keys.delayed, job_id)
    assert due_ms == int(clock.now * 1000) + 10_000
    await assert_state(clocked, 1)

    # Due: the worker gets the one job, under its own id, with the last call's data.
    clock.now += 10
    [taken], _ = await Consumer(clocked, "w1", 30).dequeue(5)
    message = TaskiqMessage.model_validate_json(taken.message)
    assert (taken.job_id, message.task_id, message.kwargs) == (job_id, job_id, {"data": {"n": 99}})


async def test_debounce_of_a_pending_job_replaces_it_in_place(clocked: JobQueue) -> None:
    first = await clocked.enqueue(dedupe_spec("debounce", 1))
    second = await clocked.enqueue(dedupe_spec("debounce", 2))
    assert second.deduplicated and second.job.id == first.job.id
    assert await clocked.redis.zcard(clocked.keys.pending) == 1
    assert (await clocked.get(first.job.id)).data == {"n": 2}
    await assert_state(clocked, 1)


async def test_debounce_after_the_job_started_makes_the_next_target(clocked: JobQueue) -> None:
    first = await clocked.enqueue(dedupe_spec("debounce", 1))
    await Consumer(clocked, "w1", 30).dequeue(1)
    second = await clocked.enqueue(dedupe_spec("debounce", 2))
    assert second.created and second.job.id != first.job.id
    third = await clocked.enqueue(dedupe_spec("debounce", 3))
    assert third.deduplicated and third.job.id == second.job.id
    assert (await clocked.get(second.job.id)).data == {"n": 3}
    assert (await clocked.get(first.job.id)).data == {"n": 1}
    await assert_state(clocked, 2)


async def test_bulk_enqueue_deduplicates_within_the_request(queue: JobQueue) -> None:
    results = await queue.enqueue_many([dedupe_spec("throttle", n) for n in range(5)])
    assert [r.created for r in results] == [True, False, False, False, False]
    assert all(r.deduplicated for r in results[1:])
    assert {r.job.id for r in results} == {results[0].job.id}
    await assert_state(queue, 1)


async def test_a_job_without_dedupe_writes_no_dedupe_key(queue: JobQueue) -> None:
    await queue.enqueue(JobSpec(type="noop"))
    await queue.enqueue(JobSpec(type="noop"))
    assert len(await job_ids(queue.redis, queue.keys)) == 2
    keys = [k async for k in queue.redis.scan_iter(match=queue.keys.dedupe_prefix + "*")]
    assert keys == []
    stored = await queue.redis.hgetall(
        queue.keys.job((await job_ids(queue.redis, queue.keys)).pop())
    )
    assert "dedupe" not in stored and json.loads(stored["msg"])["task_name"] == "noop"
