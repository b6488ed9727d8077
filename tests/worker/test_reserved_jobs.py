"""A worker that prefetches many jobs runs only `WORKER_CONCURRENCY` of them: the stats, the
metrics snapshot and Prometheus count those as processing and the rest as reserved.

A real worker process (concurrency 2, prefetch 30) holds 32 long probe jobs; the API is the
real app on the same queue.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.api.app import create_app
from service.metrics import contract as c
from service.metrics.collector import collect
from service.metrics.datums import snapshot_datums
from service.metrics.prometheus import prometheus_name
from service.queue.models import JobSpec
from service.queue.queue import JobQueue
from service.queue.states import JobState
from service.settings import Settings
from tests.support.workers import PROBE, all_done, running_worker, wait_until, worker_env

pytestmark = pytest.mark.slow

API_KEY = "test-api-key-0123456789abcdef"
CONCURRENCY, PREFETCH, EXTRA = 2, 30, 8


@pytest.fixture
async def client(redis_url: str, queue: JobQueue) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        environment="test",
        redis_url=redis_url,
        queue_name=queue.keys.queue,
        key_prefix="jqtest",
        api_keys=API_KEY,
    )
    app: FastAPI = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api.test", headers={"X-API-Key": API_KEY}
        ) as http:
            yield http


def prometheus_value(text: str, spec: c.MetricSpec) -> float:
    name = prometheus_name(spec)
    [line] = [row for row in text.splitlines() if row.startswith(name + "{")]
    return float(line.rsplit(" ", 1)[1])


async def test_prefetched_jobs_are_reserved_and_only_running_ones_are_processing(
    queue: JobQueue, redis_url: str, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    env = worker_env(
        redis_url,
        queue.keys.queue,
        worker_concurrency=CONCURRENCY,
        worker_prefetch=PREFETCH,
        heartbeat_seconds=0.2,
        shutdown_grace_seconds=1,
        lease_seconds=3,
        **PROBE,
    )
    held = CONCURRENCY + PREFETCH
    specs = [JobSpec(type="probe", data={"seconds": 60}) for _ in range(held + EXTRA)]
    await queue.enqueue_many(specs)

    async def settled() -> dict[str, Any] | None:
        stats: dict[str, Any] = (await client.get("/jobs/stats")).json()
        leased = stats["counts"]["processing"] + stats["reserved"]
        return stats if leased == held and stats["counts"]["processing"] == CONCURRENCY else None

    async def starts_recorded() -> list[dict[str, Any]] | None:
        active = (await client.get("/jobs/active", params={"limit": 100})).json()["items"]
        started = [job for job in active if job["started_at"] is not None]
        return active if len(active) == held and len(started) == CONCURRENCY else None

    with running_worker(env, tmp_path / "worker.log"):
        stats = await wait_until(settled, timeout=20)
        snapshot = await collect(queue)
        prometheus = (await client.get("/metrics")).text
        [worker] = (await client.get("/jobs/workers")).json()["items"]
        # Starts ride on the lease renewal (every LEASE_SECONDS / 3 = 1 s here).
        active = await wait_until(starts_recorded, timeout=10)
        details = [(await client.get(f"/jobs/{job['id']}")).json() for job in active]

    # The API: processing is what runs, the rest of what the worker leased is reserved.
    assert stats["counts"]["processing"] == CONCURRENCY
    assert stats["reserved"] == PREFETCH
    assert stats["counts"]["pending"] == EXTRA
    assert len(worker["current_jobs"]) == CONCURRENCY
    # The metrics task's snapshot and what it publishes to CloudWatch.
    assert snapshot.counts.by_state[JobState.PROCESSING] == CONCURRENCY
    assert snapshot.reserved == PREFETCH
    assert snapshot.backlog == held + EXTRA  # scaling still counts every leased job
    values = {d.spec.name: d.value for d in snapshot_datums(snapshot) if d.extra_value is None}
    assert values[c.ACTIVE_JOBS.name] == CONCURRENCY
    assert values[c.RESERVED_JOBS.name] == PREFETCH
    # Prometheus.
    assert prometheus_value(prometheus, c.ACTIVE_JOBS) == CONCURRENCY
    assert prometheus_value(prometheus, c.RESERVED_JOBS) == PREFETCH
    # The worker's own split, and the per-type split from the heartbeats' running_types.
    assert (worker["running"], worker["reserved"]) == (CONCURRENCY, PREFETCH)
    assert stats["by_type"]["probe"]["processing"] == CONCURRENCY
    assert stats["reserved_by_type"] == {"probe": PREFETCH}
    # Each job says which it is: the running ones by start first, then the reserved ones with
    # no invented start time (the lease time dequeue used to write).
    assert [job["reserved"] for job in active] == [False] * CONCURRENCY + [True] * PREFETCH
    for detail in details:
        assert detail["status"] == "processing"
        assert (detail["started_at"] is None) == detail["reserved"]


async def test_a_prefetched_job_starts_when_its_code_does_not_when_it_was_leased(
    queue: JobQueue, redis_url: str, tmp_path: Path
) -> None:
    """One slot, one prefetched: the second job waits in the worker for the first to end, and
    its start, wait and run times say so (before: its start was the lease time, with the first)."""
    env = worker_env(
        redis_url, queue.keys.queue, worker_concurrency=1, worker_prefetch=1,
        shutdown_grace_seconds=1, **PROBE,
    )  # fmt: skip
    specs = [JobSpec(type="probe", data={"seconds": 1.5}) for _ in range(2)]
    ids = [r.job.id for r in await queue.enqueue_many(specs)]
    with running_worker(env, tmp_path / "worker.log"):
        await wait_until(lambda: all_done(queue, ids), timeout=20)
    first, second = await queue.get_many(ids)
    assert first.state is second.state is JobState.COMPLETED
    assert first.started_at is not None and first.finished_at is not None
    assert second.started_at is not None and second.finished_at is not None
    # Both were leased together (the second's "processing" entry is as early as the first's)...
    assert abs(first.timeline[1].at - second.timeline[1].at).total_seconds() < 0.5
    # ...but the second's code started only when the first one's slot freed.
    assert second.started_at >= first.finished_at - timedelta(milliseconds=50)
    samples = dict(zip(("second", "first"), await queue.recent_samples(), strict=True))
    assert samples["second"][0] >= 1400  # it waited the first one's 1.5 s run
    assert 1400 <= samples["second"][1] < 3000  # its own run, not the wait as well
