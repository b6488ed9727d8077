"""Flows and fair-share groups together (docs/queue.md "Flows" and "Groups"): flow jobs with a
group wait in their group's pending set and take its turns; a released parent joins its group;
cascades, failures, retries and stalls keep every group count exact and leave no key behind."""

from __future__ import annotations

import json

from redis.asyncio import Redis

from service.queue.consumer import Consumer, Outcome
from service.queue.groups import Groups
from service.queue.models import FlowNode, JobSpec, OnChildFailure
from service.queue.queue import JobQueue
from service.queue.states import JobState
from tests.support.clock import SettableClock
from tests.support.state import assert_consistent, assert_no_leaked_keys


def node(
    *children: FlowNode,
    group: str | None = None,
    on_child_failure: OnChildFailure = "fail",
    **spec: object,
) -> FlowNode:
    return FlowNode(
        spec=JobSpec.model_validate({"type": "noop", "group": group, **spec}),
        on_child_failure=on_child_failure,
        children=list(children),
    )


async def take(consumer: Consumer, n: int = 100) -> list[str]:
    taken, _ = await consumer.dequeue(n)
    return [d.job_id for d in taken]


async def complete(consumer: Consumer, *job_ids: str) -> None:
    await consumer.finish_many(
        [Outcome(job_id, True, json.dumps({"done": job_id})) for job_id in job_ids]
    )


async def group_counts(queue: JobQueue, *names: str) -> dict[str, tuple[int, int]]:
    """(pending, running) of each group."""
    infos = [await Groups(queue).get(name) for name in names]
    return {info.name: (info.pending, info.running) for info in infos}


async def assert_groups_gone(queue: JobQueue) -> None:
    """Nothing of any group is left once its jobs ended: no index entry, no turn, no count."""
    k = queue.keys
    assert await queue.redis.zrange(k.groups, 0, -1, withscores=True) == []
    assert await queue.redis.exists(k.groups_ready, k.groups_held, k.groups_pending) == 0
    assert await queue.redis.hgetall(k.group_state) == {}


async def test_a_flow_with_children_in_two_groups_takes_turns_and_runs_its_parent_once(
    clocked: JobQueue, redis: Redis
) -> None:
    children = [node(group="a") for _ in range(3)] + [node(group="b") for _ in range(3)]
    flow = await clocked.enqueue_flow(node(*children, group="a"))
    root, kids = flow.root.id, [c.id for c in flow.root.children]
    assert (await clocked.get(kids[0])).group == "a"
    assert (await clocked.get(kids[3])).group == "b"
    # The waiting parent is in no group set: only its six children are pending in groups.
    assert await group_counts(clocked, "a", "b") == {"a": (3, 0), "b": (3, 0)}
    await assert_consistent(redis, clocked.keys)

    consumer = Consumer(clocked, "w1", 30)
    order = [await take(consumer, 1) for _ in range(6)]
    groups_in_order = [(await clocked.get(job_id)).group for [job_id] in order]
    assert groups_in_order == ["a", "b"] * 3  # round robin between the groups
    assert await group_counts(clocked, "a", "b") == {"a": (0, 3), "b": (0, 3)}

    await complete(consumer, *kids[:5])
    assert (await clocked.get(root)).state is JobState.WAITING_CHILDREN
    await complete(consumer, kids[5])
    parent = await clocked.get(root)
    assert (parent.state, parent.group) == (JobState.PENDING, "a")
    # Released through the group's pending path: in group a's set, and a's turn is ready.
    assert await redis.zscore(clocked.keys.group("a"), root) is not None
    assert await redis.zscore(clocked.keys.groups_ready, "a") is not None
    await assert_consistent(redis, clocked.keys)

    assert await take(consumer) == [root]
    assert await take(consumer) == []  # once only
    await complete(consumer, root)
    assert (await clocked.get(root)).state is JobState.COMPLETED
    assert [e.state for e in (await clocked.get(root)).timeline].count(JobState.PENDING) == 1
    assert await clocked.children_results(root) == {k: {"done": k} for k in kids}
    await assert_groups_gone(clocked)
    await assert_consistent(redis, clocked.keys)
    await assert_no_leaked_keys(redis, clocked.keys)


async def test_cancelling_a_parent_with_grouped_children_pending_and_running_zeroes_groups(
    clocked: JobQueue, redis: Redis
) -> None:
    flow = await clocked.enqueue_flow(
        node(node(group="a"), node(group="a"), node(group="b"), group="b")
    )
    root = flow.root.id
    consumer = Consumer(clocked, "w1", 30)
    [running] = await take(consumer, 1)  # one of group a's children runs; two stay pending
    assert await group_counts(clocked, "a", "b") == {"a": (1, 1), "b": (1, 0)}

    assert await clocked.cancel(root) is not None
    states = {c.id: (await clocked.get(c.id)).state for c in flow.root.children}
    assert set(states.values()) == {JobState.CANCELLED}
    assert (await clocked.get(root)).state is JobState.CANCELLED
    assert await group_counts(clocked, "a", "b") == {"a": (0, 0), "b": (0, 0)}
    await assert_groups_gone(clocked)
    # The running child's late finish is stale and frees nothing twice.
    await complete(consumer, running)
    await assert_groups_gone(clocked)
    assert await take(consumer) == []
    await assert_consistent(redis, clocked.keys)
    await assert_no_leaked_keys(redis, clocked.keys)


async def test_cancel_mode_cascade_from_a_failed_grouped_child_leaves_groups_exact(
    clocked: JobQueue, redis: Redis
) -> None:
    doomed = node(group="a", attempts=1)
    flow = await clocked.enqueue_flow(
        node(doomed, node(group="a"), node(group="b"), on_child_failure="cancel")
    )
    root = flow.root.id
    first, second, third = (c.id for c in flow.root.children)
    consumer = Consumer(clocked, "w1", 30)
    assert await take(consumer, 1) == [first]
    await consumer.finish_many([Outcome(first, False, "boom")])
    # The parent and its children not started are cancelled in the finish's own step.
    assert (await clocked.get(root)).state is JobState.CANCELLED
    assert (await clocked.get(second)).state is JobState.CANCELLED
    assert (await clocked.get(third)).state is JobState.CANCELLED
    await assert_groups_gone(clocked)
    await assert_consistent(redis, clocked.keys)
    await assert_no_leaked_keys(redis, clocked.keys)


async def test_a_retried_grouped_child_rejoins_its_group_and_re_arms_its_grouped_parent(
    clocked: JobQueue, redis: Redis
) -> None:
    flow = await clocked.enqueue_flow(node(node(group="a", attempts=1), node(group="b"), group="a"))
    root = flow.root.id
    doomed, other = (c.id for c in flow.root.children)
    consumer = Consumer(clocked, "w1", 30)
    assert sorted(await take(consumer)) == sorted([doomed, other])
    await consumer.finish_many([Outcome(doomed, False, "boom")])
    await complete(consumer, other)
    assert (await clocked.get(root)).state is JobState.FAILED
    await assert_groups_gone(clocked)

    await clocked.retry(doomed)
    assert (await clocked.get(root)).state is JobState.WAITING_CHILDREN
    assert await group_counts(clocked, "a") == {"a": (1, 0)}
    assert await redis.zscore(clocked.keys.group("a"), doomed) is not None
    await assert_consistent(redis, clocked.keys)
    assert await take(consumer) == [doomed]
    await complete(consumer, doomed)
    assert await redis.zscore(clocked.keys.group("a"), root) is not None
    assert await take(consumer) == [root]
    await complete(consumer, root)
    await assert_groups_gone(clocked)
    await assert_consistent(redis, clocked.keys)
    await assert_no_leaked_keys(redis, clocked.keys)


async def test_a_grouped_child_failed_by_the_sweeper_frees_its_group_and_fails_the_parent(
    clocked: JobQueue, clock: SettableClock, redis: Redis
) -> None:
    flow = await clocked.enqueue_flow(node(node(group="a", attempts=5), group="a"))
    child = flow.root.children[0].id
    sweeper = Consumer(clocked, "sweeper", 30)
    for round_ in range(4):  # its worker "dies" four times: the fourth stall fails it
        assert await take(Consumer(clocked, f"w{round_}", 1)) == [child]
        assert await group_counts(clocked, "a") == {"a": (0, 1)}
        clock.now += 2
        await redis.delete(clocked.keys.sweep_lock)  # the lock's TTL runs on real time
        assert await sweeper.sweep(lock_ms=1000, worker_ttl_ms=10_000) is not None
    assert (await clocked.get(child)).state is JobState.FAILED
    assert (await clocked.get(flow.root.id)).state is JobState.FAILED
    await assert_groups_gone(clocked)
    await assert_consistent(redis, clocked.keys)
    await assert_no_leaked_keys(redis, clocked.keys)


async def test_a_group_s_concurrency_holds_flow_children_like_any_job(
    clocked: JobQueue, redis: Redis
) -> None:
    await Groups(clocked).set_concurrency("a", 1)
    flow = await clocked.enqueue_flow(node(node(group="a"), node(group="a"), node(group="b")))
    consumer = Consumer(clocked, "w1", 30)
    taken = await take(consumer)
    assert sorted(job.group or "" for job in await clocked.get_many(taken)) == ["a", "b"]
    await complete(consumer, *taken)
    [last] = await take(consumer)
    assert (await clocked.get(last)).group == "a"
    await complete(consumer, last)
    assert await take(consumer) == [flow.root.id]
    await complete(consumer, flow.root.id)
    await Groups(clocked).set_concurrency("a", None)
    await assert_groups_gone(clocked)
    await assert_consistent(redis, clocked.keys)
    await assert_no_leaked_keys(redis, clocked.keys)
