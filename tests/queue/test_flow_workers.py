"""A 1,000-child flow with real worker processes, some SIGKILLed mid-run: the parent runs
exactly once, after the last child, and sees every child's result."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.queue.models import FlowNode, JobSpec
from service.queue.queue import JobQueue
from service.queue.states import JobState
from tests.support.state import assert_consistent, assert_no_leaked_keys
from tests.support.workers import (
    PROBE,
    all_done,
    kill_group,
    running_worker,
    start_worker,
    wait_until,
    worker_env,
)

pytestmark = pytest.mark.slow

CHILDREN = 1000


async def completed(redis: Redis, queue: JobQueue, at_least: int) -> bool:
    return int(await redis.zcard(queue.keys.completed)) >= at_least


async def test_a_1000_child_flow_runs_its_parent_once_after_the_last_child_despite_sigkills(
    queue: JobQueue, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    child = FlowNode(spec=JobSpec(type="probe", data={"seconds": 0.02}, attempts=5))
    flow = await queue.enqueue_flow(
        FlowNode(spec=JobSpec(type="probe-parent", attempts=5), children=[child] * CHILDREN)
    )
    root, kids = flow.ids[0], flow.ids[1:]
    env = worker_env(redis_url, queue.keys.queue, lease_seconds=2, worker_concurrency=10, **PROBE)
    doomed: list[subprocess.Popen[bytes]] = []
    try:
        # Worker groups run the children; three are SIGKILLed mid-run, one after the other
        # (their held jobs are re-leased by the others' sweepers), the last one survives.
        doomed.append(start_worker(env, tmp_path / "doomed-1.log"))
        doomed.append(start_worker(env, tmp_path / "doomed-2.log"))
        await wait_until(lambda: completed(redis, queue, 200), timeout=60)
        kill_group(doomed[0])
        doomed.append(start_worker(env, tmp_path / "doomed-3.log"))
        await wait_until(lambda: completed(redis, queue, 500), timeout=60)
        kill_group(doomed[1])
        await wait_until(lambda: completed(redis, queue, 800), timeout=60)
        with running_worker(env, tmp_path / "survivor.log"):
            kill_group(doomed[2])
            await wait_until(lambda: all_done(queue, [root]), timeout=90, interval=0.2)
    finally:
        for process in doomed:
            kill_group(process)

    jobs = {job.id: job for job in await queue.get_many(flow.ids)}
    assert {jobs[k].state for k in kids} == {JobState.COMPLETED}
    parent = jobs[root]
    assert parent.state is JobState.COMPLETED, parent.error
    runs = [line for line in await queue.logs(root) if line.startswith("ran ")]
    assert len(runs) == 1, runs  # the parent's code ran exactly once
    assert runs[0].endswith(f" {CHILDREN}")  # and saw every child's result
    assert parent.result["children"] == CHILDREN
    last_child_end = max(jobs[k].finished_at for k in kids)  # type: ignore[type-var]
    assert parent.started_at is not None and parent.started_at >= last_child_end
    assert [e.state for e in parent.timeline].count(JobState.PENDING) == 1
    assert sum(jobs[k].stalls for k in kids) > 0, "no child was held by a killed worker"
    await assert_consistent(redis, queue.keys)
    await assert_no_leaked_keys(redis, queue.keys)
