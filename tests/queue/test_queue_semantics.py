"""Queue semantics through the queue layer and the consumer, against a real server."""

from __future__ import annotations

import itertools

import pytest
from redis.asyncio import Redis

from service.queue.consumer import Consumer, FinishStatus, Outcome
from service.queue.errors import InvalidRequestError, InvalidTransitionError, JobNotFoundError
from service.queue.models import Backoff, JobSpec, Retention
from service.queue.queue import JobQueue, QueueConfig
from service.queue.states import TRANSITIONS, JobState, Priority
from tests.support.clock import SettableClock
from tests.support.state import assert_consistent, assert_no_leaked_keys


def spec(priority: Priority = Priority.NORMAL, **kwargs: object) -> JobSpec:
    return JobSpec(type="noop", priority=priority, **kwargs)  # type: ignore[arg-type]


async def test_critical_job_enqueued_after_1000_normal_ones_starts_next(clocked: JobQueue) -> None:
    await clocked.enqueue_many([spec() for _ in range(1000)])
    critical = await clocked.enqueue(spec(Priority.CRITICAL))
    consumer = Consumer(clocked, "w1", 30)
    taken, _ = await consumer.dequeue(1)
    assert [d.job_id for d in taken] == [critical.job.id]


async def test_jobs_run_by_priority_then_fifo_within_a_level(clocked: JobQueue) -> None:
    order = [Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.NORMAL, Priority.LOW,
             Priority.CRITICAL, Priority.HIGH]  # fmt: skip
    results = await clocked.enqueue_many([spec(p) for p in order])
    expected = [
        r.job.id
        for r in sorted(results, key=lambda r: -int(r.job.priority))  # sorted() is stable: FIFO
    ]
    consumer = Consumer(clocked, "w1", 30)
    taken, _ = await consumer.dequeue(len(order))
    assert [d.job_id for d in taken] == expected
    listed = await clocked.list_jobs(JobState.PROCESSING)
    assert {j.id for j in listed.items} == set(expected)


async def test_pending_list_is_in_run_order_and_pages_are_stable(clocked: JobQueue) -> None:
    results = await clocked.enqueue_many([spec(Priority.LOW)] * 3 + [spec(Priority.HIGH)] * 3)
    ids = [r.job.id for r in results]
    expected = ids[3:] + ids[:3]
    first = await clocked.list_jobs(JobState.PENDING, limit=4)
    assert [j.id for j in first.items] == expected[:4]
    assert first.next_cursor is not None
    second = await clocked.list_jobs(JobState.PENDING, limit=4, cursor=first.next_cursor)
    assert [j.id for j in second.items] == expected[4:]
    assert second.next_cursor is None
    with pytest.raises(InvalidRequestError):
        await clocked.list_jobs(JobState.PENDING, cursor="garbage")


async def test_delayed_job_is_not_handed_out_before_due(
    clocked: JobQueue, clock: SettableClock
) -> None:
    delayed = await clocked.enqueue(spec(delay_seconds=10))
    assert delayed.job.state is JobState.DELAYED
    consumer = Consumer(clocked, "w1", 30)
    taken, next_due = await consumer.dequeue(5)
    assert taken == []
    assert next_due == int(clock.now * 1000) + 10_000
    clock.now += 9.999
    assert (await consumer.dequeue(5))[0] == []
    clock.now += 0.001
    taken, next_due = await consumer.dequeue(5)
    assert [d.job_id for d in taken] == [delayed.job.id]
    assert next_due is None


async def test_failed_attempt_waits_its_backoff_then_fails_for_good(
    clocked: JobQueue, clock: SettableClock, redis: Redis
) -> None:
    backoff = Backoff(type="exponential", delay_seconds=2, max_delay_seconds=5, jitter=0)
    job = (await clocked.enqueue(spec(attempts=4, backoff=backoff))).job
    consumer = Consumer(clocked, "w1", 30)
    delays = []
    for attempt in (1, 2, 3):
        (delivery,), _ = await consumer.dequeue(1)
        assert delivery.attempt == attempt
        delay_ms = int(backoff.delay_for(attempt) * 1000)
        status = await consumer.finish_many([Outcome(job.id, False, "boom", "tb", delay_ms)])
        assert status == [FinishStatus.RETRY_SCHEDULED]
        due = await redis.zscore(clocked.keys.delayed, job.id)
        delays.append(due - clock.now * 1000)
        assert (await consumer.dequeue(1))[0] == []  # not before its backoff
        clock.now += delay_ms / 1000
    assert delays == [2000, 4000, 5000]  # exponential, capped at max_delay_seconds
    (delivery,), _ = await consumer.dequeue(1)
    status = await consumer.finish_many([Outcome(job.id, False, "boom", "tb", 1000)])
    assert status == [FinishStatus.FAILED]
    failed = await clocked.get(job.id)
    assert failed.state is JobState.FAILED
    assert (failed.attempts_made, failed.error, failed.traceback) == (4, "boom", "tb")
    await assert_consistent(redis, clocked.keys)


async def test_permanent_failure_is_not_retried(clocked: JobQueue) -> None:
    job = (await clocked.enqueue(spec(attempts=5))).job
    consumer = Consumer(clocked, "w1", 30)
    await consumer.dequeue(1)
    assert await consumer.finish_many([Outcome(job.id, False, "bad input", "", -1)]) == [
        FinishStatus.FAILED
    ]
    assert (await clocked.get(job.id)).attempts_made == 1


@pytest.mark.parametrize("state", [JobState.PENDING, JobState.DELAYED, JobState.PROCESSING])
async def test_cancel_in_each_live_state(clocked: JobQueue, redis: Redis, state: JobState) -> None:
    job = (await clocked.enqueue(spec(delay_seconds=60 if state is JobState.DELAYED else 0))).job
    consumer = Consumer(clocked, "w1", 30)
    if state is JobState.PROCESSING:
        await consumer.dequeue(1)
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(clocked.keys.cancel_channel)
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        cancelled = await clocked.cancel(job.id)
        signal = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
    assert cancelled.state is JobState.CANCELLED
    assert (signal or {}).get("data") == (job.id if state is JobState.PROCESSING else None)
    # The worker's late finish is stale: a cancelled job is never retried or completed.
    assert await consumer.finish_many([Outcome(job.id, False, "x", "", 0)]) == [0]
    assert (await consumer.dequeue(1))[0] == []
    assert (await clocked.get(job.id)).state is JobState.CANCELLED
    await assert_consistent(redis, clocked.keys)


async def test_cancel_finished_or_unknown_job_is_refused(clocked: JobQueue) -> None:
    job = (await clocked.enqueue(spec())).job
    consumer = Consumer(clocked, "w1", 30)
    await consumer.dequeue(1)
    await consumer.finish_many([Outcome(job.id, True, "null")])
    with pytest.raises(InvalidTransitionError, match="completed"):
        await clocked.cancel(job.id)
    with pytest.raises(JobNotFoundError):
        await clocked.cancel("no-such-job")


async def test_retry_runs_a_failed_job_again_from_its_first_attempt(
    clocked: JobQueue, redis: Redis
) -> None:
    job = (await clocked.enqueue(spec())).job
    consumer = Consumer(clocked, "w1", 30)
    await consumer.dequeue(1)
    await consumer.finish_many([Outcome(job.id, False, "boom", "", -1)])
    retried = await clocked.retry(job.id)
    assert (retried.state, retried.attempts_made, retried.error) == (JobState.PENDING, 0, None)
    with pytest.raises(InvalidTransitionError):
        await clocked.retry(job.id)
    await assert_consistent(redis, clocked.keys)


async def test_expired_lease_returns_job_to_pending_and_renewal_keeps_it(
    clocked: JobQueue, clock: SettableClock, redis: Redis
) -> None:
    lost, kept = (r.job.id for r in await clocked.enqueue_many([spec(), spec()]))
    dead, alive = Consumer(clocked, "dead", 10), Consumer(clocked, "alive", 10)
    await dead.dequeue(1)
    await alive.dequeue(1)
    for _ in range(5):  # the live worker renews; the dead one does not
        clock.now += 4
        assert await alive.renew([kept]) == []
    report = await alive.sweep(lock_ms=1000, worker_ttl_ms=10_000)
    assert report is not None and report.requeued == 1
    assert (await clocked.get(lost)).state is JobState.PENDING
    assert (await clocked.get(lost)).stalls == 1
    assert (await clocked.get(kept)).state is JobState.PROCESSING
    # The dead worker wakes up: its finish is stale and its renewal reports the job lost.
    assert await dead.finish_many([Outcome(lost, True, "null")]) == [0]
    assert await dead.renew([lost]) == [lost]
    await assert_consistent(redis, clocked.keys)


async def test_a_job_that_keeps_killing_workers_fails(
    clocked: JobQueue, clock: SettableClock, redis: Redis
) -> None:
    job = (await clocked.enqueue(spec(attempts=10))).job
    sweeper = Consumer(clocked, "sweeper", 1)
    for _ in range(4):
        await Consumer(clocked, "doomed", 1).dequeue(1)
        clock.now += 2
        await redis.delete(clocked.keys.sweep_lock)  # the lock's TTL runs on real time
        await sweeper.sweep(lock_ms=1000, worker_ttl_ms=1000)
    failed = await clocked.get(job.id)
    assert failed.state is JobState.FAILED
    assert "lost its worker 4 times" in (failed.error or "")


async def test_release_hands_jobs_back_without_spending_an_attempt(clocked: JobQueue) -> None:
    job = (await clocked.enqueue(spec())).job
    consumer = Consumer(clocked, "w1", 30)
    await consumer.dequeue(1)
    assert await consumer.release([job.id]) == 1
    back = await clocked.get(job.id)
    assert (back.state, back.attempts_made, back.worker_id) == (JobState.PENDING, 0, None)
    assert await consumer.release([job.id]) == 0  # no longer ours


async def test_idempotency_key_returns_the_first_job(clocked: JobQueue, redis: Redis) -> None:
    first = await clocked.enqueue(spec(idempotency_key="order-42"))
    again = await clocked.enqueue(spec(idempotency_key="order-42", priority=Priority.HIGH))
    assert first.created and not again.created
    assert again.job.id == first.job.id
    assert await redis.zcard(clocked.keys.pending) == 1


async def test_retention_keeps_the_last_n_completed(
    clocked: JobQueue, clock: SettableClock, redis: Redis
) -> None:
    keep_two = Retention(count=2)
    jobs = [r.job.id for r in await clocked.enqueue_many([spec(keep_completed=keep_two)] * 5)]
    consumer = Consumer(clocked, "w1", 30)
    await consumer.dequeue(5)
    for job_id in jobs:
        clock.now += 1
        await consumer.finish_many([Outcome(job_id, True, "1")])
    assert await redis.zrange(clocked.keys.completed, 0, -1) == jobs[-2:]
    for gone in jobs[:3]:
        with pytest.raises(JobNotFoundError):
            await clocked.get(gone)
    await assert_consistent(redis, clocked.keys)
    await assert_no_leaked_keys(redis, clocked.keys)


async def test_retention_remove_at_once_and_by_age(
    clocked: JobQueue, clock: SettableClock, redis: Redis
) -> None:
    at_once, by_age, forever = (
        r.job.id
        for r in await clocked.enqueue_many(
            [
                spec(keep_completed=Retention(count=0), idempotency_key="k1"),
                spec(keep_completed=Retention(age_seconds=60)),
                spec(keep_completed=Retention()),
            ]
        )
    )
    consumer = Consumer(clocked, "w1", 30)
    await consumer.dequeue(3)
    for job_id in (at_once, by_age, forever):
        await consumer.log(job_id, "a line")
    await consumer.finish_many([Outcome(j, True, "1") for j in (at_once, by_age, forever)])
    with pytest.raises(JobNotFoundError):
        await clocked.get(at_once)
    clock.now += 59
    await consumer.sweep(lock_ms=1000, worker_ttl_ms=1000)
    assert (await clocked.get(by_age)).state is JobState.COMPLETED
    clock.now += 2
    await redis.delete(clocked.keys.sweep_lock)
    await consumer.sweep(lock_ms=1000, worker_ttl_ms=1000)
    with pytest.raises(JobNotFoundError):
        await clocked.get(by_age)
    assert (await clocked.get(forever)).state is JobState.COMPLETED
    await assert_consistent(redis, clocked.keys)
    await assert_no_leaked_keys(redis, clocked.keys)


async def test_counts_per_state_priority_and_type(clocked: JobQueue, clock: SettableClock) -> None:
    await clocked.enqueue_many(
        [
            spec(Priority.HIGH),
            spec(Priority.HIGH),
            spec(Priority.LOW),
            spec(delay_seconds=5),
            JobSpec(type="other"),
        ]
    )
    clock.now += 30
    counts = await clocked.counts()
    assert counts.by_state[JobState.PENDING] == 4
    assert counts.by_state[JobState.DELAYED] == 1
    assert counts.pending_by_priority == {"low": 1, "normal": 1, "high": 2, "critical": 0}
    assert counts.by_type["noop"][JobState.PENDING] == 3
    assert counts.by_type["other"][JobState.PENDING] == 1
    assert counts.oldest_pending_age_seconds == pytest.approx(30, abs=0.01)


async def test_progress_and_logs_are_stored_and_capped(clocked: JobQueue, redis: Redis) -> None:
    small = JobQueue(redis, clocked.keys, QueueConfig(max_log_lines=3), clock=clocked.clock)
    job = (await small.enqueue(spec())).job
    consumer = Consumer(small, "w1", 30)
    await consumer.dequeue(1)
    assert await consumer.progress(job.id, 40, "almost half")
    for n in range(5):
        await consumer.log(job.id, f"line {n}")
    stored = await small.get(job.id)
    assert (stored.progress, stored.progress_message) == (40, "almost half")
    assert await small.logs(job.id) == ["line 2", "line 3", "line 4"]
    assert not await Consumer(small, "other", 30).progress(job.id, 50, "")  # not its job


async def test_timeline_follows_the_allowed_transitions(
    clocked: JobQueue, clock: SettableClock
) -> None:
    job = (await clocked.enqueue(spec(attempts=2, delay_seconds=1))).job
    consumer = Consumer(clocked, "w1", 30)
    clock.now += 1
    await consumer.dequeue(1)
    await consumer.finish_many([Outcome(job.id, False, "boom", "", 0)])
    await consumer.dequeue(1)
    await consumer.finish_many([Outcome(job.id, True, "2")])
    states = [entry.state for entry in (await clocked.get(job.id)).timeline]
    assert states == ["delayed", "pending", "processing", "delayed", "pending", "processing",
                      "completed"]  # fmt: skip
    for before, after in itertools.pairwise(states):
        assert after in TRANSITIONS[JobState(before)], f"{before} -> {after} is not allowed"


async def test_type_concurrency_limit_holds_across_consumers(clocked: JobQueue) -> None:
    await clocked.set_type_limits({"limited": 2})
    await clocked.enqueue_many([JobSpec(type="limited")] * 5 + [JobSpec(type="free")] * 2)
    first, _ = await Consumer(clocked, "a", 30).dequeue(10)
    second, _ = await Consumer(clocked, "b", 30).dequeue(10)
    taken = [(await clocked.get(d.job_id)).type for d in first + second]
    assert sorted(taken) == ["free", "free", "limited", "limited"]
    await Consumer(clocked, "a", 30).finish_many([Outcome(first[0].job_id, True, "1")])
    third, _ = await Consumer(clocked, "c", 30).dequeue(10)
    assert len(third) == 1
