"""The collector reports a known queue state exactly, in a constant number of round trips."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from metrics_state import T0, FakeClock, build_known_state, heartbeat, spec, unlink_queue
from redis.asyncio import Redis

from service.metrics.collector import collect, percentile
from service.queue.consumer import Consumer, Outcome
from service.queue.groups import Groups
from service.queue.queue import JobQueue
from service.queue.states import JobState, Priority


async def test_snapshot_reports_every_number_of_a_known_state(
    cqueue: JobQueue, clock: FakeClock
) -> None:
    known = await build_known_state(cqueue, clock)

    snap = await collect(cqueue, period_seconds=60)

    assert snap.taken_at == datetime.fromtimestamp(T0 + 5, tz=UTC)
    assert snap.depth == known.depth == 10
    assert snap.counts.pending_by_priority == known.depth_by_priority
    pending_by_type = {t: s[JobState.PENDING] for t, s in snap.counts.by_type.items()}
    assert pending_by_type == known.depth_by_type
    assert snap.counts.by_state[JobState.DELAYED] == known.delayed
    assert snap.counts.by_state[JobState.PROCESSING] == known.active
    assert snap.counts.reserved == snap.reserved == known.reserved
    assert snap.counts.oldest_pending_age_seconds == known.oldest_pending_age
    assert (snap.completed_last_period, snap.failed_last_period, snap.retried_last_period) == (
        3,
        2,
        1,
    )
    assert snap.live_workers == 2
    assert sorted(w.id for w in snap.workers) == ["worker-a", "worker-b"]
    assert snap.backlog_per_worker == 5.0
    assert (snap.wait_p50_ms, snap.wait_p99_ms) == known.wait_ms
    assert (snap.run_p50_ms, snap.run_p99_ms) == known.run_ms
    assert snap.period_started_at == datetime.fromtimestamp(T0 - 60, tz=UTC)


async def test_period_counts_only_closed_minutes_so_consecutive_periods_never_overlap(
    cqueue: JobQueue, clock: FakeClock
) -> None:
    consumer = Consumer(cqueue, "w", lease_seconds=3600)

    async def complete_one_at(at: float) -> None:
        clock.set(at)
        await cqueue.enqueue(spec("x"))
        [delivery], _ = await consumer.dequeue(1)
        await consumer.finish_many([Outcome(delivery.job_id, True, "null")])

    await complete_one_at(T0 - 30)  # minute T0-60
    await complete_one_at(T0 + 10)  # minute T0 (still open at the first tick)
    clock.set(T0 + 20)
    first = await collect(cqueue, 60)
    clock.set(T0 + 65)
    second = await collect(cqueue, 60)

    assert first.completed_last_period == 1
    assert second.completed_last_period == 1
    # The dashboard figure counts the open minute: the job of T0+10 shows at once.
    assert first.throughput_last_minute["completed"] == 1 + round(1 * (1 - 20 / 60))


async def test_five_minute_period_sums_the_five_closed_minutes(
    cqueue: JobQueue, clock: FakeClock
) -> None:
    consumer = Consumer(cqueue, "w", lease_seconds=3600)
    for minute in range(-7, 1):  # one failure in each of 8 minutes, the last one still open
        clock.set(T0 + minute * 60 + 1)
        await cqueue.enqueue(spec("x"))
        [delivery], _ = await consumer.dequeue(1)
        await consumer.finish_many([Outcome(delivery.job_id, False, "no")])
    clock.set(T0 + 5)

    snap = await collect(cqueue, 300)

    assert snap.failed_last_period == 5
    assert snap.period_seconds == 300
    assert snap.period_started_at == datetime.fromtimestamp(T0 - 300, tz=UTC)


async def test_empty_queue_gives_zeros_not_errors(cqueue: JobQueue) -> None:
    snap = await collect(cqueue)

    assert snap.depth == 0
    assert snap.live_workers == 0
    assert snap.backlog_per_worker == 0.0
    assert (snap.wait_p50_ms, snap.wait_p99_ms, snap.run_p50_ms, snap.run_p99_ms) == (0, 0, 0, 0)
    assert snap.counts.oldest_pending_age_seconds == 0.0


async def test_backlog_per_worker_divides_by_one_when_no_worker_is_alive(
    cqueue: JobQueue,
) -> None:
    await cqueue.enqueue_many([spec("x") for _ in range(7)])

    snap = await collect(cqueue)

    assert snap.live_workers == 0
    assert snap.backlog_per_worker == 7.0


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile([7], 0.99) == 7
    assert percentile(list(range(1, 11)), 0.25) == 3  # rank ceil(2.5): never rounded down
    assert percentile([], 0.5) == 0


# --- round trips -----------------------------------------------------------------------------


@contextmanager
def count_round_trips(redis: Redis) -> Iterator[list[int]]:
    """Count requests sent to the server: every command or pipeline is one send_packed_command."""
    counter = [0]
    pool = redis.connection_pool
    original = pool.connection_class.send_packed_command

    async def counting(self: object, command: object, check_health: bool = True) -> None:
        counter[0] += 1
        await original(self, command, check_health)  # type: ignore[arg-type]

    pool.connection_class.send_packed_command = counting  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        pool.connection_class.send_packed_command = original  # type: ignore[method-assign]


async def _round_trips_of_collect(queue: JobQueue) -> int:
    await collect(queue)  # warm up: the first call may load the oldest-pending script
    with count_round_trips(queue.redis) as counter:
        await collect(queue)
    return counter[0]


async def test_round_trips_stay_constant_from_ten_to_a_hundred_thousand_pending_jobs(
    redis: Redis, cqueue: JobQueue
) -> None:
    await heartbeat(cqueue, "worker-a")
    await cqueue.enqueue_many([spec("small", Priority.HIGH) for _ in range(10)])
    at_ten = await _round_trips_of_collect(cqueue)

    try:
        # Batches of 1000, four in flight: the server's work overlaps the client's parsing.
        for _ in range(25):
            await asyncio.gather(
                *(cqueue.enqueue_many([spec("bulk") for _ in range(1000)]) for _ in range(4))
            )
        at_100k = await _round_trips_of_collect(cqueue)
        snap = await collect(cqueue)
    finally:
        await unlink_queue(redis, cqueue.keys)

    assert snap.depth == 100_010
    # Counts, oldest pending, minutes, samples, workers, flow settings (paused and limits),
    # group figures (docs/queue.md "Groups": three O(log groups) reads in one pipeline).
    assert at_ten == at_100k == 8


async def test_group_figures_and_a_paused_groups_jobs_left_out_of_the_backlog(
    cqueue: JobQueue,
) -> None:
    await cqueue.enqueue_many([spec("alpha", group="big") for _ in range(6)])
    await cqueue.enqueue_many([spec("alpha", group="small") for _ in range(2)])
    await cqueue.enqueue_many([spec("alpha")])
    snap = await collect(cqueue)
    assert (snap.groups_with_backlog, snap.largest_group_share) == (2, 0.75)
    assert snap.backlog == 9
    await Groups(cqueue).pause("big")
    paused = await collect(cqueue)
    assert paused.depth == 9 and paused.backlog == 3  # the paused group's 6 cannot start
    await Groups(cqueue).resume("big")
    assert (await collect(cqueue)).backlog == 9
