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
    expected_counts: Counter[str] = Counter()
    for job_id in ids:
        state, job_type = await redis.hmget(keys.job(job_id), "state", "type")
        holding = [s for s, ids_in in members.items() if job_id in ids_in]
        assert holding == [JobState(state)], f"job {job_id} is {state} but in sets {holding}"
        assert await redis.zscore(keys.type_index(job_type), job_id) is not None
        expected_counts[f"{job_type}|{state}"] += 1
    for state, ids_in in members.items():
        orphans = ids_in - ids
        assert not orphans, f"{state} set holds ids without a job hash: {sorted(orphans)[:5]}"
    stored = {k: int(v) for k, v in (await redis.hgetall(keys.type_counts)).items() if int(v)}
    assert stored == dict(expected_counts), f"type counts {stored} != {dict(expected_counts)}"
    for job_id in await redis.zrange(keys.expiry, 0, -1):
        assert job_id in ids, f"expiry entry {job_id} has no job"


async def assert_no_leaked_keys(
    redis: Redis, keys: QueueKeys, allowed_extra: set[str] = frozenset()
) -> None:  # type: ignore[assignment]
    """Every key of the queue is one the key module names for an existing job or the queue."""
    ids = await job_ids(redis, keys)
    fixed = {
        keys.pending, keys.delayed, keys.active, keys.completed, keys.failed, keys.cancelled,
        keys.marker, keys.sequence, keys.type_counts, keys.type_limits, keys.expiry, keys.samples,
        keys.sweep_lock, keys.workers, keys.flow, keys.lanes, keys.schedules,
        keys.history_folded, keys.waiting_children,
    }  # fmt: skip
    # Per-job families: a flow parent's children list, child results and child failures.
    per_job = (keys.logs_prefix, keys.children_prefix, keys.child_results_prefix,
               keys.child_failures_prefix)  # fmt: skip
    # Queue-level families: flow-control lanes and their start windows, schedules, history.
    families = (
        keys.lane_prefix, keys.lane_starts_prefix, keys.schedule_prefix,
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
