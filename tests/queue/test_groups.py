"""Fair-share groups on a real Redis (docs/queue.md "Groups"): round robin between groups within
a priority, priorities across groups, ungrouped jobs as before, per-group pause, concurrency and
rate, the interplay with type lanes, and counts and keys kept right by every way a job leaves
pending or processing."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from service.queue.consumer import Consumer, Delivery, Outcome
from service.queue.flow_control import FlowControl, RateLimit
from service.queue.groups import Groups
from service.queue.models import JobSpec
from service.queue.options import JobOptions
from service.queue.queue import JobQueue
from service.queue.states import JobState, Priority
from tests.support.state import assert_consistent, assert_no_leaked_keys


def spec(group: str | None, n: int = 0, **fields: object) -> JobSpec:
    return JobSpec.model_validate({"type": "noop", "data": {"n": n}, "group": group, **fields})


async def enqueue(queue: JobQueue, group: str | None, n: int, **fields: object) -> list[str]:
    ids: list[str] = []
    for start in range(0, n, 1000):  # bulk calls of at most 1,000, as the HTTP API takes them
        batch = [spec(group, i, **fields) for i in range(start, min(n, start + 1000))]
        ids += [r.job.id for r in await queue.enqueue_many(batch)]
    return ids


async def take(consumer: Consumer, n: int, per_call: int = 1) -> list[Delivery]:
    taken: list[Delivery] = []
    while len(taken) < n:
        got, _ = await consumer.dequeue(min(per_call, n - len(taken)))
        if not got:
            break
        taken += got
    return taken


async def group_of(queue: JobQueue, deliveries: list[Delivery]) -> list[str | None]:
    return [job.group for job in await queue.get_many([d.job_id for d in deliveries])]


async def finish(consumer: Consumer, deliveries: list[Delivery]) -> None:
    await consumer.finish_many([Outcome(d.job_id, True, "null") for d in deliveries])


async def running(queue: JobQueue, group: str) -> int:
    return (await Groups(queue).get(group)).running


async def test_ten_jobs_of_a_second_group_all_start_within_the_first_40_of_10010(
    queue: JobQueue,
) -> None:
    big = await enqueue(queue, "tenant-a", 10_000)
    small = await enqueue(queue, "tenant-b", 10)  # after the whole backlog of tenant-a
    consumer = Consumer(queue, "w1", 30)
    first = [d.job_id for d in await take(consumer, 40, per_call=4)]
    assert set(small) <= set(first), f"tenant-b started {len(set(small) & set(first))} of 10"
    # tenant-a kept its own FIFO order meanwhile.
    assert [j for j in first if j not in small] == big[: 40 - len(small)]
    assert (await Groups(queue).get("tenant-a")).pending == 10_000 - 30
    await assert_consistent(queue.redis, queue.keys)


async def test_three_groups_take_turns_within_a_priority_level(queue: JobQueue) -> None:
    for group in ("a", "b", "c"):
        await enqueue(queue, group, 4)
    taken = await take(Consumer(queue, "w1", 30), 12, per_call=5)
    assert await group_of(queue, taken) == ["a", "b", "c"] * 4


async def test_priority_comes_before_turns_across_groups(queue: JobQueue) -> None:
    await enqueue(queue, "a", 3)
    [urgent] = await enqueue(queue, "b", 1, priority=Priority.HIGH)
    [critical] = await enqueue(queue, None, 1, priority=Priority.CRITICAL)
    [later_high] = await enqueue(queue, "a", 1, priority=Priority.HIGH)
    taken = [d.job_id for d in await take(Consumer(queue, "w1", 30), 6)]
    # critical (ungrouped) first, then both high jobs in FIFO order of their groups' turns.
    assert taken[:3] == [critical, urgent, later_high]
    assert await group_of(queue, [Delivery(j, "", 0, 0) for j in taken[3:]]) == ["a"] * 3


async def test_ungrouped_jobs_keep_fifo_and_grouped_ones_queue_behind_earlier_ones(
    queue: JobQueue,
) -> None:
    plain = await enqueue(queue, None, 3)
    grouped = await enqueue(queue, "a", 2)
    plain_later = await enqueue(queue, None, 1)
    taken = [d.job_id for d in await take(Consumer(queue, "w1", 30), 6, per_call=6)]
    # The group's second job is queued as if enqueued when the group was served, so behind
    # the ungrouped job that came after the group's first one.
    assert taken == [*plain, grouped[0], *plain_later, grouped[1]]


async def test_without_groups_the_fast_path_keeps_every_key_as_before(queue: JobQueue) -> None:
    ids = await enqueue(queue, None, 5)
    consumer = Consumer(queue, "w1", 30)
    assert [d.job_id for d in await take(consumer, 5, per_call=5)] == ids
    k = queue.keys
    assert await queue.redis.exists(k.groups, k.groups_ready, k.groups_held, k.group_state) == 0


async def test_group_concurrency_holds_the_group_only(queue: JobQueue) -> None:
    groups = Groups(queue)
    await groups.set_concurrency("a", 2)
    await enqueue(queue, "a", 5)
    await enqueue(queue, "b", 5)
    consumer = Consumer(queue, "w1", 30)
    taken = await take(consumer, 10, per_call=10)
    assert sorted(await group_of(queue, taken)) == ["a", "a"] + ["b"] * 5
    assert await running(queue, "a") == 2
    assert (await consumer.dequeue(5))[0] == []  # a is at its limit, b is drained
    await finish(consumer, [d for d in taken if d.job_id in (await _ids_of(queue, taken, "a"))][:1])
    assert await running(queue, "a") == 1
    [next_a], _ = await consumer.dequeue(5)
    assert (await queue.get(next_a.job_id)).group == "a"


async def _ids_of(queue: JobQueue, deliveries: list[Delivery], group: str) -> list[str]:
    jobs = await queue.get_many([d.job_id for d in deliveries])
    return [job.id for job in jobs if job.group == group]


async def test_group_rate_holds_it_and_names_the_wake_up_time(queue: JobQueue) -> None:
    await Groups(queue).set_rate("a", RateLimit(limit=2, per_seconds=0.5))
    await enqueue(queue, "a", 5)
    [b_job] = await enqueue(queue, "b", 1)
    consumer = Consumer(queue, "w1", 30)
    taken, _ = await consumer.dequeue(10)
    assert sorted(await group_of(queue, taken)) == ["a", "a", "b"]
    assert await queue.redis.zscore(queue.keys.groups_held, "a") is not None
    got, wake = await consumer.dequeue(10)
    assert got == [] and wake is not None  # the worker sleeps until a's window moves on
    await asyncio.sleep(0.6)  # the window is on the server's clock (TIME), not ours
    again, _ = await consumer.dequeue(10)
    assert await group_of(queue, again) == ["a", "a"]
    assert b_job in [d.job_id for d in taken]


async def test_paused_group_starts_nothing_until_resumed(queue: JobQueue) -> None:
    groups = Groups(queue)
    await groups.pause("a")
    held = await enqueue(queue, "a", 3)
    free = await enqueue(queue, "b", 2)
    consumer = Consumer(queue, "w1", 30)
    assert [d.job_id for d in await take(consumer, 10, per_call=10)] == free
    info = await groups.get("a")
    assert (info.paused, info.pending, info.running) == (True, 3, 0)
    await groups.resume("a")
    assert [d.job_id for d in await take(consumer, 10, per_call=10)] == held


async def test_a_paused_type_holds_its_grouped_jobs_which_count_in_their_group(
    queue: JobQueue,
) -> None:
    # Types and groups both apply: a grouped job of a paused or limited type waits in the
    # type's lane; once started it counts in its group's running jobs.
    flow = FlowControl(queue)
    await flow.pause_lane("noop")
    [held] = await enqueue(queue, "a", 1)
    consumer = Consumer(queue, "w1", 30)
    assert (await consumer.dequeue(5))[0] == []
    assert (await queue.counts()).by_state[JobState.PENDING] == 1
    await flow.resume_lane("noop")
    [taken], _ = await consumer.dequeue(5)
    assert taken.job_id == held and await running(queue, "a") == 1
    await finish(consumer, [taken])
    assert await running(queue, "a") == 0
    await assert_no_leaked_keys(queue.redis, queue.keys)


async def test_type_paused_after_its_jobs_were_grouped_still_holds_them(queue: JobQueue) -> None:
    ids = await enqueue(queue, "a", 2)
    await FlowControl(queue).pause_lane("noop")
    consumer = Consumer(queue, "w1", 30)
    assert (await consumer.dequeue(5))[0] == []
    assert set(await queue.redis.zrange(queue.keys.lane("noop"), 0, -1)) == set(ids)
    await FlowControl(queue).resume_lane("noop")
    assert {d.job_id for d in await take(consumer, 2, per_call=2)} == set(ids)


async def test_pending_listings_and_counts_include_grouped_jobs(queue: JobQueue) -> None:
    grouped = await enqueue(queue, "a", 3, priority=Priority.HIGH)
    plain = await enqueue(queue, None, 2)
    counts = await queue.counts()
    assert counts.by_state[JobState.PENDING] == 5
    assert counts.pending_by_priority["high"] == 3
    assert counts.oldest_pending_age_seconds >= 0
    page = await queue.list_jobs(JobState.PENDING, limit=10)
    assert [job.id for job in page.items] == grouped + plain
    assert page.items[0].group == "a"
    await assert_consistent(queue.redis, queue.keys)


async def test_cancel_debounce_and_reprioritise_keep_group_counts(queue: JobQueue) -> None:
    groups = Groups(queue)
    a1, a2, a3 = await enqueue(queue, "a", 3)
    await queue.cancel(a1)
    assert (await groups.get("a")).pending == 2
    await assert_consistent(queue.redis, queue.keys)
    await FlowControl(queue).set_priority(a3, Priority.CRITICAL)
    [first], _ = await Consumer(queue, "w1", 30).dequeue(1)
    assert first.job_id == a3
    await queue.cancel(a2)
    info = await groups.get("a")
    assert (info.pending, info.running) == (0, 1)
    assert await queue.redis.zscore(queue.keys.groups_ready, "a") is None
    await queue.cancel(a3)  # processing: its slot is freed
    assert (await groups.list_groups())[1] == 0
    await assert_no_leaked_keys(queue.redis, queue.keys)


async def test_debounce_moves_a_waiting_job_to_the_newer_calls_group(queue: JobQueue) -> None:
    dedupe = {"key": "k", "mode": "debounce", "ttl_seconds": 60}
    first = await queue.enqueue(spec("a", dedupe=dedupe))
    again = await queue.enqueue(spec("b", dedupe=dedupe))
    assert again.deduplicated and again.job.id == first.job.id
    assert [(g.name, g.pending) for g in (await Groups(queue).list_groups())[0]] == [("b", 1)]
    [taken], _ = await Consumer(queue, "w1", 30).dequeue(1)
    assert (await queue.get(taken.job_id)).group == "b"


async def test_release_sweep_and_retry_keep_running_counts_never_negative(
    clocked: JobQueue,
) -> None:
    ids = await enqueue(clocked, "a", 3)
    consumer = Consumer(clocked, "w1", 30)
    taken = await take(consumer, 3, per_call=3)
    assert await running(clocked, "a") == 3
    assert await consumer.release([taken[0].job_id]) == 1  # shutdown hand-back
    assert await running(clocked, "a") == 2
    clocked.clock.now += 60  # type: ignore[attr-defined]  # the leases of the other two expire
    report = await consumer.sweep(lock_ms=1000, worker_ttl_ms=60_000)
    assert report is not None and report.requeued == 2
    assert (await Groups(clocked).get("a")).running == 0
    again = await take(consumer, 3, per_call=3)
    assert {d.job_id for d in again} == set(ids)
    await consumer.finish_many([Outcome(d.job_id, False, "boom") for d in again])
    await clocked.retry(ids[0])
    [retried] = await take(consumer, 1)
    await finish(consumer, [retried])
    values = await clocked.redis.hgetall(clocked.keys.group_state)
    assert all(int(v) >= 0 for k, v in values.items() if k.startswith("running|"))
    assert await running(clocked, "a") == 0
    await assert_consistent(clocked.redis, clocked.keys)


async def test_every_key_of_a_group_goes_once_its_jobs_end(queue: JobQueue) -> None:
    groups = Groups(queue)
    await groups.set_rate("r", RateLimit(limit=100, per_seconds=0.2))
    await enqueue(queue, "r", 3)
    await enqueue(queue, "c", 3, delay_seconds=0)
    consumer = Consumer(queue, "w1", 30)
    await finish(consumer, await take(consumer, 6, per_call=6))
    await groups.set_rate("r", None)
    await asyncio.sleep(1.3)  # the rate log expires one window + 1 s after its last start
    assert await groups.list_groups() == ([], 0)
    k = queue.keys
    assert not await queue.redis.exists(
        k.groups, k.groups_ready, k.groups_held, k.group_state, k.groups_pending
    )
    await assert_no_leaked_keys(queue.redis, queue.keys)


async def test_delayed_grouped_jobs_join_their_group_when_due(clocked: JobQueue) -> None:
    [later] = await enqueue(clocked, "a", 1, delay_seconds=5)
    consumer = Consumer(clocked, "w1", 30)
    assert (await consumer.dequeue(1))[0] == []
    clocked.clock.now += 6  # type: ignore[attr-defined]
    [taken], _ = await consumer.dequeue(1)
    assert taken.job_id == later


@pytest.mark.parametrize(
    ("name", "problem"),
    [("x" * 129, "129 bytes"), ("é" * 65, "130 bytes"), ("a\nb", r"U\+000A"), ("", "empty")],
)
def test_bad_group_names_are_refused_naming_the_fix(name: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        JobOptions(group=name)


def test_a_kiq_label_sets_the_group() -> None:
    assert JobOptions.from_labels({"group": "tenant-42"}).group == "tenant-42"
    assert JobOptions(group="x" * 128).group == "x" * 128
