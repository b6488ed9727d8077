"""A worker that prefetches many jobs runs only `WORKER_CONCURRENCY` of them: the stats, the
metrics snapshot and Prometheus count those as processing and the rest as reserved.

A real worker process (concurrency 2, prefetch 30) holds 32 long probe jobs; the API is the
real app on the same queue.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
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
from tests.support.workers import PROBE, running_worker, wait_until, worker_env

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
        **PROBE,
    )
    held = CONCURRENCY + PREFETCH
    specs = [JobSpec(type="probe", data={"seconds": 60}) for _ in range(held + EXTRA)]
    await queue.enqueue_many(specs)

    async def settled() -> dict[str, Any] | None:
        stats: dict[str, Any] = (await client.get("/jobs/stats")).json()
        leased = stats["counts"]["processing"] + stats["reserved"]
        return stats if leased == held and stats["counts"]["processing"] == CONCURRENCY else None

    with running_worker(env, tmp_path / "worker.log"):
        stats = await wait_until(settled, timeout=20)
        snapshot = await collect(queue)
        prometheus = (await client.get("/metrics")).text
        [worker] = (await client.get("/jobs/workers")).json()["items"]

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
