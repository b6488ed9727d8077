"""A job's start time is when its code started, never the lease time: `dequeue` writes none
(a prefetched job may wait in its worker), the worker sends it with its next renewal or its
finish, and until then the job reads reserved with no start (docs/queue.md, "Processing and
reserved"). Through the consumer against a real server, on a settable clock."""

from __future__ import annotations

from datetime import UTC, datetime

from redis.asyncio import Redis

from service.queue.consumer import Consumer, JobStart, Outcome
from service.queue.models import Backoff, JobSpec
from service.queue.queue import JobQueue
from service.queue.states import JobState
from tests.support.clock import T0, SettableClock
from tests.support.state import assert_consistent


def at(seconds_after_t0: float) -> datetime:
    return datetime.fromtimestamp(T0 + seconds_after_t0, tz=UTC)


def ms(seconds_after_t0: float) -> int:
    return int((T0 + seconds_after_t0) * 1000)


async def test_a_dequeued_job_is_reserved_with_no_start_until_a_renewal_records_one(
    clocked: JobQueue, clock: SettableClock, redis: Redis
) -> None:
    job = (await clocked.enqueue(JobSpec(type="noop"))).job
    worker = Consumer(clocked, "w1", 30)
    clock.now += 1
    [delivery], _ = await worker.dequeue(1)

    leased = await clocked.get(job.id)
    assert leased.state is JobState.PROCESSING
    assert leased.reserved and leased.started_at is None
    [active] = (await clocked.list_jobs(JobState.PROCESSING, 10, None)).items
    assert active.id == job.id and active.reserved

    clock.now += 2  # the code starts 2 s after the lease, and the renewal after that
    start = JobStart(job.id, delivery.attempt, ms(3))
    clock.now += 5
    assert await worker.renew([job.id], [start]) == []
    running = await clocked.get(job.id)
    assert running.started_at == at(3) and not running.reserved

    clock.now += 4
    assert await worker.finish_many([Outcome(job.id, True, "null", started_ms=ms(3))]) == [1]
    done = await clocked.get(job.id)
    assert done.started_at == at(3) and done.finished_at == at(12)
    # Wait is enqueue to code start, run is code start to end: not lease to end.
    assert await clocked.recent_samples() == [(3000, 9000)]
    await assert_consistent(redis, clocked.keys)


async def test_a_finish_records_the_start_no_renewal_sent(
    clocked: JobQueue, clock: SettableClock
) -> None:
    job = (await clocked.enqueue(JobSpec(type="noop"))).job
    worker = Consumer(clocked, "w1", 30)
    await worker.dequeue(1)
    clock.now += 2
    assert await worker.finish_many([Outcome(job.id, True, "1", started_ms=ms(1))]) == [1]
    assert (await clocked.get(job.id)).started_at == at(1)
    assert await clocked.recent_samples() == [(1000, 1000)]


async def test_a_job_whose_code_never_ran_ends_with_no_start(clocked: JobQueue) -> None:
    job = (await clocked.enqueue(JobSpec(type="noop"))).job
    worker = Consumer(clocked, "w1", 30)
    await worker.dequeue(1)
    assert await worker.finish_many([Outcome(job.id, False, "unknown type")]) == [3]
    failed = await clocked.get(job.id)
    assert failed.started_at is None and not failed.reserved


async def test_a_start_for_another_worker_or_an_old_attempt_is_not_recorded(
    clocked: JobQueue, clock: SettableClock
) -> None:
    spec = JobSpec(type="noop", attempts=3, backoff=Backoff(type="fixed", delay_seconds=0))
    job = (await clocked.enqueue(spec)).job
    worker, other = Consumer(clocked, "w1", 30), Consumer(clocked, "w2", 30)
    [first], _ = await worker.dequeue(1)
    assert await other.renew([], [JobStart(job.id, first.attempt, ms(1))]) == []
    assert (await clocked.get(job.id)).reserved  # not w2's job

    await worker.renew([job.id], [JobStart(job.id, first.attempt, ms(1))])
    clock.now += 2
    fail = Outcome(job.id, False, "boom", retry_delay_ms=0, started_ms=ms(1))
    assert await worker.finish_many([fail]) == [2]
    clock.now += 1
    [second], _ = await worker.dequeue(1)
    assert second.attempt == first.attempt + 1
    retried = await clocked.get(job.id)
    # The retry is reserved again: the job's first start stays, the attempt has none yet.
    assert retried.reserved and retried.started_at == at(1)
    # A late renewal carrying the first attempt's start changes nothing.
    await worker.renew([job.id], [JobStart(job.id, first.attempt, ms(1))])
    assert (await clocked.get(job.id)).reserved
    await worker.renew([job.id], [JobStart(job.id, second.attempt, ms(3))])
    assert not (await clocked.get(job.id)).reserved
    clock.now += 1
    assert await worker.finish_many([Outcome(job.id, True, "null", started_ms=ms(3))]) == [1]
    # The run sample is the second attempt's: 1 s from its start.
    assert (await clocked.recent_samples())[0][1] == 1000


async def test_active_listing_puts_running_jobs_by_start_before_reserved_ones(
    clocked: JobQueue, clock: SettableClock
) -> None:
    ids = [r.job.id for r in await clocked.enqueue_many([JobSpec(type="noop")] * 3)]
    worker = Consumer(clocked, "w1", 30)
    deliveries, _ = await worker.dequeue(3)
    by_id = {d.job_id: d for d in deliveries}
    # The third job started first, the first one second; the second is still reserved.
    starts = [JobStart(ids[2], by_id[ids[2]].attempt, ms(1)),
              JobStart(ids[0], by_id[ids[0]].attempt, ms(2))]  # fmt: skip
    await worker.renew(ids, starts)
    page = await clocked.list_jobs(JobState.PROCESSING, 10, None)
    assert [j.id for j in page.items] == [ids[2], ids[0], ids[1]]
    assert [j.reserved for j in page.items] == [False, False, True]
