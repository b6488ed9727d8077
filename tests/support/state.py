"""Checks of the whole Redis state of a queue: every job is in exactly the set its state names,
counts agree with the sets, and no key is left that the queue does not account for."""

from __future__ import annotations

from collections import Counter

from redis.asyncio import Redis

from service.queue.keys import QueueKeys
from service.queue.states import JobState


async def job_ids(redis: Redis, keys: QueueKeys) -> set[str]:
    """Ids of every job hash of the queue."""
    prefix = keys.job_prefix
    return {key[len(prefix) :] async for key in redis.scan_iter(match=prefix + "*", count=1000)}


async def assert_consistent(redis: Redis, keys: QueueKeys) -> None:
    """Fail with a precise message if the queue's keys disagree with each other."""
    ids = await job_ids(redis, keys)
    members = {state: set(await redis.zrange(keys.state_set(state), 0, -1)) for state in JobState}
    # Pending jobs may wait in a type lane or a group instead of `pending` (docs/queue.md
    # "Flow control", "Groups"): they count as in the pending set.
    for lane in await redis.smembers(keys.lanes):
        members[JobState.PENDING] |= set(await redis.zrange(keys.lane(lane), 0, -1))
    members[JobState.PENDING] |= await _grouped_pending(redis, keys)
    expected_counts: Counter[str] = Counter()
    running_by_group: Counter[str] = Counter()
    for job_id in ids:
        state, job_type, group = await redis.hmget(keys.job(job_id), "state", "type", "group")
        holding = [s for s, ids_in in members.items() if job_id in ids_in]
        assert holding == [JobState(state)], f"job {job_id} is {state} but in sets {holding}"
        assert await redis.zscore(keys.type_index(job_type), job_id) is not None
        expected_counts[f"{job_type}|{state}"] += 1
        if group is not None and state == JobState.PROCESSING:
            running_by_group[group] += 1
        if state == JobState.WAITING_CHILDREN:
            await _assert_waits_for_its_open_children(redis, keys, job_id)
    # A group's running count is exactly its processing jobs (flows' cascades included).
    running = {
        field.removeprefix("running|"): int(value)
        for field, value in (await redis.hgetall(keys.group_state)).items()
        if field.startswith("running|")
    }
    assert running == dict(running_by_group), f"group running {running} != {running_by_group}"
    for state, ids_in in members.items():
        orphans = ids_in - ids
        assert not orphans, f"{state} set holds ids without a job hash: {sorted(orphans)[:5]}"
    stored = {k: int(v) for k, v in (await redis.hgetall(keys.type_counts)).items() if int(v)}
    assert stored == dict(expected_counts), f"type counts {stored} != {dict(expected_counts)}"
    for job_id in await redis.zrange(keys.expiry, 0, -1):
        assert job_id in ids, f"expiry entry {job_id} has no job"


async def _assert_waits_for_its_open_children(redis: Redis, keys: QueueKeys, job_id: str) -> None:
    """A waiting flow parent's `waiting` is the number of its children not ended yet."""
    ended = {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}
    children = await redis.lrange(keys.children(job_id), 0, -1)
    states = [await redis.hget(keys.job(child), "state") for child in children]
    open_children = sum(1 for state in states if state is not None and state not in ended)
    waiting = int(await redis.hget(keys.job(job_id), "waiting") or 0)
    assert waiting == open_children, f"parent {job_id} waits for {waiting}, {open_children} open"


async def _grouped_pending(redis: Redis, keys: QueueKeys) -> set[str]:
    """The jobs in group sets, checked against the index of groups and the all-groups set."""
    grouped: set[str] = set()
    for group, score in await redis.zrange(keys.groups, 0, -1, withscores=True):
        in_group = set(await redis.zrange(keys.group(group), 0, -1))
        assert len(in_group) == score, f"group {group} holds {len(in_group)}, indexed {score}"
        for job_id in in_group:
            assert await redis.hget(keys.job(job_id), "group") == group
        grouped |= in_group
    all_grouped = set(await redis.zrange(keys.groups_pending, 0, -1))
    assert all_grouped == grouped, f"groups_pending differs by {sorted(all_grouped ^ grouped)[:5]}"
    for field, value in (await redis.hgetall(keys.group_state)).items():
        if field.startswith("running|"):
            assert int(value) > 0, f"{field} = {value}"
    return grouped


async def assert_no_leaked_keys(
    redis: Redis, keys: QueueKeys, allowed_extra: set[str] = frozenset()
) -> None:  # type: ignore[assignment]
    """Every key of the queue is one the key module names for an existing job or the queue."""
    ids = await job_ids(redis, keys)
    fixed = {
        keys.pending, keys.delayed, keys.active, keys.completed, keys.failed, keys.cancelled,
        keys.marker, keys.sequence, keys.type_counts, keys.type_limits, keys.expiry, keys.samples,
        keys.sweep_lock, keys.workers, keys.flow, keys.lanes, keys.schedules,
        keys.history_folded, keys.groups, keys.groups_ready, keys.groups_held, keys.group_state,
        keys.groups_pending, keys.groups_paused, keys.waiting_children,
    }  # fmt: skip
    # Per-job families: a flow parent's children list, child results and child failures.
    per_job = (keys.logs_prefix, keys.children_prefix, keys.child_results_prefix,
               keys.child_failures_prefix)  # fmt: skip
    # Queue-level families: flow-control lanes and their start windows, fair-share groups and
    # theirs, schedules, history.
    families = (
        keys.lane_prefix, keys.lane_starts_prefix, keys.group_prefix, keys.group_starts_prefix,
        keys.schedule_prefix,
        keys.schedule_runs_prefix, keys.history_minute(0)[:-1], keys.history_hour(0)[:-1],
    )  # fmt: skip
    leaked = []
    async for key in redis.scan_iter(match=keys.job_prefix.rsplit(":", 2)[0] + ":*", count=1000):
        if key in fixed or key in allowed_extra:
            continue
        if key.startswith(keys.job_prefix) and key[len(keys.job_prefix) :] in ids:
            continue
        if any(key.startswith(prefix) and key[len(prefix) :] in ids for prefix in per_job):
            continue
        if key.startswith(keys.type_index_prefix) or key.startswith(keys.stats_minute(0)[:-1]):
            continue
        if key.startswith(keys.idempotency_prefix):
            owner = await redis.get(key)
            if owner in ids:
                continue
        if key.startswith(keys.worker("")) or key.startswith(families):
            continue
        leaked.append(key)
    assert not leaked, f"keys not accounted for: {leaked[:10]}"
