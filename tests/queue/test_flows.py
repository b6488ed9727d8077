"""Flows through the queue layer and the consumer: a parent runs once, after its children."""

from __future__ import annotations

import json

import pytest
from redis.asyncio import Redis

from service.queue.consumer import Consumer, FinishStatus, Outcome
from service.queue.errors import InvalidRequestError
from service.queue.flows import MAX_FLOW_CHILDREN, MAX_FLOW_DEPTH
from service.queue.models import FlowNode, JobSpec, OnChildFailure, Retention
from service.queue.queue import JobQueue
from service.queue.states import JobState
from tests.support.clock import SettableClock
from tests.support.state import assert_consistent, assert_no_leaked_keys


def node(
    *children: FlowNode, on_child_failure: OnChildFailure = "fail", **spec: object
) -> FlowNode:
    return FlowNode(
        spec=JobSpec(type="noop", **spec),  # type: ignore[arg-type]
        on_child_failure=on_child_failure,
        children=list(children),
    )


async def take(consumer: Consumer, n: int = 100) -> list[str]:
    taken, _ = await consumer.dequeue(n)
    return [d.job_id for d in taken]


async def complete(consumer: Consumer, *job_ids: str) -> list[int]:
    return await consumer.finish_many(
        [Outcome(job_id, True, json.dumps({"done": job_id})) for job_id in job_ids]
    )


async def fail(consumer: Consumer, *job_ids: str) -> list[int]:
    return await consumer.finish_many([Outcome(job_id, False, "boom") for job_id in job_ids])


async def state(queue: JobQueue, job_id: str) -> JobState:
    return (await queue.get(job_id)).state


async def test_parent_waits_for_every_child_then_runs_once_with_their_results(
    clocked: JobQueue, redis: Redis
) -> None:
    flow = await clocked.enqueue_flow(node(node(), node(), node()))
    root, kids = flow.root.id, [c.id for c in flow.root.children]
    assert flow.ids == [root, *kids]
    assert flow.root.state is JobState.WAITING_CHILDREN
    assert {c.state for c in flow.root.children} == {JobState.PENDING}
    consumer = Consumer(clocked, "w1", 30)
    assert sorted(await take(consumer)) == sorted(kids)  # never the parent

    assert await complete(consumer, kids[0], kids[1]) == [FinishStatus.COMPLETED] * 2
    parent = await clocked.get(root)
    assert (parent.state, parent.waiting_for) == (JobState.WAITING_CHILDREN, 1)
    assert await take(consumer) == []

    await complete(consumer, kids[2])
    parent = await clocked.get(root)
    assert (parent.state, parent.waiting_for) == (JobState.PENDING, 0)
    assert [e.state for e in parent.timeline] == [JobState.WAITING_CHILDREN, JobState.PENDING]
    assert await clocked.children_results(root) == {k: {"done": k} for k in kids}
    children = await clocked.children(root)
    assert [(c.id, c.state) for c in children.children] == [(k, JobState.COMPLETED) for k in kids]
    assert (await clocked.get(kids[0])).parent_id == root
    assert await take(consumer) == [root]
    await complete(consumer, root)
    await assert_consistent(redis, clocked.keys)
    await assert_no_leaked_keys(redis, clocked.keys)


async def test_grandchildren_run_before_children_before_the_root(clocked: JobQueue) -> None:
    flow = await clocked.enqueue_flow(node(node(node(), node()), node()))
    middle, leaf = flow.root.children
    grandchildren = [c.id for c in middle.children]
    consumer = Consumer(clocked, "w1", 30)
    assert sorted(await take(consumer)) == sorted([*grandchildren, leaf.id])
    await complete(consumer, leaf.id, *grandchildren)
    assert await take(consumer) == [middle.id]
    assert await state(clocked, flow.root.id) is JobState.WAITING_CHILDREN
    await complete(consumer, middle.id)
    assert await take(consumer) == [flow.root.id]


async def test_a_re_leased_child_does_not_release_its_parent_twice(
    clocked: JobQueue, clock: SettableClock, redis: Redis
) -> None:
    flow = await clocked.enqueue_flow(node(node(), node()))
    first, second = (c.id for c in flow.root.children)
    crashed, other = Consumer(clocked, "w-crashed", 2), Consumer(clocked, "w2", 30)
    assert sorted(await take(crashed)) == sorted([first, second])
    clock.now += 3  # the crashed worker's leases lapse; the sweeper hands its jobs back
    await other.sweep(lock_ms=1000, worker_ttl_ms=10_000)
    assert sorted(await take(other)) == sorted([first, second])
    await complete(other, first, second)
    # The first holder comes back and reports the same jobs done: stale, nothing changes.
    assert await complete(crashed, first, second) == [FinishStatus.STALE] * 2
    parent = await clocked.get(flow.root.id)
    assert (parent.state, parent.waiting_for) == (JobState.PENDING, 0)
    assert [e.state for e in parent.timeline].count(JobState.PENDING) == 1
    assert await take(other) == [flow.root.id]
    await assert_consistent(redis, clocked.keys)


async def test_fail_mode_fails_the_parent_and_a_retried_child_re_arms_it(
    clocked: JobQueue, redis: Redis
) -> None:
    flow = await clocked.enqueue_flow(node(node(attempts=1), node(), node()))
    root = flow.root.id
    doomed, slow, quick = (c.id for c in flow.root.children)
    consumer = Consumer(clocked, "w1", 30)
    await take(consumer)
    await complete(consumer, quick)
    assert await fail(consumer, doomed) == [FinishStatus.FAILED]
    parent = await clocked.get(root)
    assert parent.state is JobState.FAILED
    assert parent.error == f"child {doomed} failed: boom"
    assert await state(clocked, slow) is JobState.PROCESSING  # siblings go on
    await complete(consumer, slow)
    assert await state(clocked, root) is JobState.FAILED  # a failed parent stays failed

    await clocked.retry(doomed)
    parent = await clocked.get(root)
    assert (parent.state, parent.waiting_for, parent.error) == (JobState.WAITING_CHILDREN, 1, None)
    assert await take(consumer) == [doomed]
    await complete(consumer, doomed)
    assert await state(clocked, root) is JobState.PENDING
    assert set(await clocked.children_results(root)) == {doomed, slow, quick}
    assert (await clocked.children(root)).failures == {}
    await assert_consistent(redis, clocked.keys)


async def test_a_parent_stays_failed_until_every_failed_child_is_retried(
    clocked: JobQueue,
) -> None:
    flow = await clocked.enqueue_flow(node(node(attempts=1), node(attempts=1)))
    first, second = (c.id for c in flow.root.children)
    consumer = Consumer(clocked, "w1", 30)
    await take(consumer)
    await fail(consumer, first, second)
    await clocked.retry(first)
    assert await state(clocked, flow.root.id) is JobState.FAILED
    await clocked.retry(second)
    assert await state(clocked, flow.root.id) is JobState.WAITING_CHILDREN
    await take(consumer)
    await complete(consumer, first, second)
    assert await state(clocked, flow.root.id) is JobState.PENDING


async def test_a_failing_child_fails_every_waiting_ancestor_and_retry_re_arms_them(
    clocked: JobQueue,
) -> None:
    flow = await clocked.enqueue_flow(node(node(node(attempts=1))))
    middle = flow.root.children[0]
    leaf = middle.children[0].id
    consumer = Consumer(clocked, "w1", 30)
    await take(consumer)
    await fail(consumer, leaf)
    assert await state(clocked, middle.id) is JobState.FAILED
    root = await clocked.get(flow.root.id)
    assert root.state is JobState.FAILED
    assert root.error == f"child {middle.id} failed: child {leaf} failed: boom"
    await clocked.retry(leaf)
    assert await state(clocked, middle.id) is JobState.WAITING_CHILDREN
    assert await state(clocked, flow.root.id) is JobState.WAITING_CHILDREN


async def test_a_child_with_attempts_left_does_not_fail_its_parent(clocked: JobQueue) -> None:
    flow = await clocked.enqueue_flow(node(node(attempts=2)))
    child = flow.root.children[0].id
    consumer = Consumer(clocked, "w1", 30)
    await take(consumer)
    finished = await consumer.finish_many([Outcome(child, False, "boom", retry_delay_ms=0)])
    assert finished == [FinishStatus.RETRY_SCHEDULED]
    assert await state(clocked, flow.root.id) is JobState.WAITING_CHILDREN
    assert await take(consumer) == [child]
    await complete(consumer, child)
    assert await state(clocked, flow.root.id) is JobState.PENDING


async def test_ignore_mode_runs_the_parent_with_the_failure_recorded(
    clocked: JobQueue, redis: Redis
) -> None:
    flow = await clocked.enqueue_flow(node(node(attempts=1), node(), on_child_failure="ignore"))
    doomed, fine = (c.id for c in flow.root.children)
    consumer = Consumer(clocked, "w1", 30)
    await take(consumer)
    await fail(consumer, doomed)
    assert await state(clocked, flow.root.id) is JobState.WAITING_CHILDREN
    await complete(consumer, fine)
    assert await state(clocked, flow.root.id) is JobState.PENDING
    children = await clocked.children(flow.root.id)
    assert children.failures == {doomed: "boom"}
    assert children.results == {fine: {"done": fine}}
    await assert_consistent(redis, clocked.keys)


async def test_cancel_mode_cancels_the_parent_and_its_siblings_not_started(
    clocked: JobQueue, redis: Redis
) -> None:
    flow = await clocked.enqueue_flow(
        node(
            node(attempts=1),
            node(),
            node(delay_seconds=60),
            node(node()),
            on_child_failure="cancel",
        )
    )
    doomed, running, delayed, waiting = (c.id for c in flow.root.children)
    grandchild = flow.root.children[3].children[0].id
    consumer = Consumer(clocked, "w1", 30)
    # The doomed child and one sibling start; the grandchild is left pending.
    taken = await take(consumer, 1) + await take(consumer, 1)
    assert set(taken) == {doomed, running}
    await fail(consumer, doomed)
    parent = await clocked.get(flow.root.id)
    assert (parent.state, parent.error) == (JobState.CANCELLED, f"child {doomed} failed: boom")
    assert await state(clocked, running) is JobState.PROCESSING  # started: left to finish
    for job_id in (delayed, waiting, grandchild):
        assert await state(clocked, job_id) is JobState.CANCELLED
    await complete(consumer, running)
    assert await state(clocked, flow.root.id) is JobState.CANCELLED
    await assert_consistent(redis, clocked.keys)


async def test_cancelling_a_parent_cancels_its_pending_and_running_children(
    clocked: JobQueue, redis: Redis
) -> None:
    flow = await clocked.enqueue_flow(node(node(), node(), node(node(), node())))
    first = flow.root.children[0]
    consumer = Consumer(clocked, "w1", 30)
    assert await take(consumer, 1) == [first.id]
    cancelled = await clocked.cancel(flow.root.id)
    assert cancelled.state is JobState.CANCELLED
    for job_id in flow.ids:
        assert await state(clocked, job_id) is JobState.CANCELLED, job_id
    assert await complete(consumer, first.id) == [FinishStatus.STALE]
    assert await take(consumer) == []
    await assert_consistent(redis, clocked.keys)


async def test_cancelling_a_child_applies_its_parents_mode(clocked: JobQueue) -> None:
    flow = await clocked.enqueue_flow(node(node(), node(), on_child_failure="ignore"))
    first, second = (c.id for c in flow.root.children)
    await clocked.cancel(first)
    consumer = Consumer(clocked, "w1", 30)
    assert await take(consumer) == [second]
    await complete(consumer, second)
    assert await state(clocked, flow.root.id) is JobState.PENDING
    assert (await clocked.children(flow.root.id)).failures == {first: "cancelled"}


async def test_a_parent_with_its_own_delay_waits_for_it_after_its_children(
    clocked: JobQueue, clock: SettableClock
) -> None:
    flow = await clocked.enqueue_flow(node(node(), delay_seconds=60))
    consumer = Consumer(clocked, "w1", 30)
    await complete(consumer, *await take(consumer))
    assert await state(clocked, flow.root.id) is JobState.DELAYED
    clock.now += 60
    assert await take(consumer) == [flow.root.id]


async def test_deleting_a_finished_flow_leaves_no_keys(clocked: JobQueue, redis: Redis) -> None:
    flow = await clocked.enqueue_flow(
        node(node(), node(), keep_completed=Retention(count=0))  # removed as soon as it ends
    )
    consumer = Consumer(clocked, "w1", 30)
    await complete(consumer, *await take(consumer))
    await complete(consumer, *await take(consumer))
    assert await redis.exists(clocked.keys.job(flow.root.id)) == 0
    for child in flow.root.children:
        await clocked.delete(child.id)
    await assert_consistent(redis, clocked.keys)
    await assert_no_leaked_keys(redis, clocked.keys)


async def test_counts_show_waiting_parents(clocked: JobQueue) -> None:
    await clocked.enqueue_flow(node(node(), node()))
    counts = await clocked.counts()
    assert counts.by_state[JobState.WAITING_CHILDREN] == 1
    assert counts.by_state[JobState.PENDING] == 2
    assert counts.by_type["noop"][JobState.WAITING_CHILDREN] == 1
    listed = await clocked.list_jobs(JobState.WAITING_CHILDREN)
    assert len(listed.items) == 1


def chain(depth: int) -> FlowNode:
    tree = node()
    for _ in range(depth - 1):
        tree = node(tree)
    return tree


async def test_a_flow_10_levels_deep_is_taken_and_11_refused_naming_the_node(
    clocked: JobQueue, redis: Redis
) -> None:
    assert len((await clocked.enqueue_flow(chain(MAX_FLOW_DEPTH))).ids) == MAX_FLOW_DEPTH
    with pytest.raises(InvalidRequestError) as refused:
        await clocked.enqueue_flow(chain(MAX_FLOW_DEPTH + 1))
    path = ".".join(["children[0]"] * MAX_FLOW_DEPTH)
    assert refused.value.details["errors"][0]["field"] == path
    assert "deeper than 10 levels" in refused.value.message
    # Nothing of the refused flow was written: only the first flow's 10 jobs exist.
    assert sum((await clocked.counts()).by_state.values()) == MAX_FLOW_DEPTH
    await assert_consistent(redis, clocked.keys)


async def test_a_flow_of_10000_children_is_taken_and_one_more_refused(
    clocked: JobQueue, redis: Redis
) -> None:
    flow = await clocked.enqueue_flow(node(*[node() for _ in range(MAX_FLOW_CHILDREN)]))
    assert len(flow.ids) == MAX_FLOW_CHILDREN + 1
    assert (await clocked.get(flow.root.id)).waiting_for == MAX_FLOW_CHILDREN
    with pytest.raises(InvalidRequestError) as refused:
        await clocked.enqueue_flow(node(*[node() for _ in range(MAX_FLOW_CHILDREN + 1)]))
    assert refused.value.details["errors"][0]["field"] == f"children[{MAX_FLOW_CHILDREN}]"
    assert (await clocked.counts()).by_state[JobState.PENDING] == MAX_FLOW_CHILDREN


async def test_idempotency_and_dedupe_keys_are_refused_on_flow_jobs(clocked: JobQueue) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        await clocked.enqueue_flow(node(node(), node(idempotency_key="k")))
    assert refused.value.details["errors"][0]["field"] == "children[1].options.idempotency_key"
    assert (await clocked.counts()).by_state[JobState.PENDING] == 0


async def test_a_child_failed_by_the_sweeper_for_stalling_fails_its_parent(
    clocked: JobQueue, clock: SettableClock, redis: Redis
) -> None:
    flow = await clocked.enqueue_flow(node(node(attempts=5)))
    child = flow.root.children[0].id
    sweeper = Consumer(clocked, "sweeper", 30)
    for round_ in range(4):  # its worker "dies" four times: the fourth stall fails it
        assert await take(Consumer(clocked, f"w{round_}", 1)) == [child]
        clock.now += 2
        await redis.delete(clocked.keys.sweep_lock)  # the lock's TTL runs on real time
        assert await sweeper.sweep(lock_ms=1000, worker_ttl_ms=10_000) is not None
    parent = await clocked.get(flow.root.id)
    assert await state(clocked, child) is JobState.FAILED
    assert parent.state is JobState.FAILED
    assert parent.error is not None and "lost its worker 4 times" in parent.error


async def test_a_parent_failed_by_a_child_counts_in_the_minutes_failed(
    clocked: JobQueue,
) -> None:
    # On-call reads failures per minute (throughput, the Failed metric and its alarm): a parent
    # that fails because of a child is a failed job like any other, whichever script ends it.
    by_finish = await clocked.enqueue_flow(node(node(attempts=1)))
    by_cancel = await clocked.enqueue_flow(node(node()))
    consumer = Consumer(clocked, "w1", 30)
    await take(consumer)
    await fail(consumer, by_finish.root.children[0].id)
    await clocked.cancel(by_cancel.root.children[0].id)
    assert await state(clocked, by_finish.root.id) is JobState.FAILED
    assert await state(clocked, by_cancel.root.id) is JobState.FAILED
    # The child that failed, its parent, and the parent failed by its cancelled child.
    assert (await clocked.throughput(1))["failed"] == 3
