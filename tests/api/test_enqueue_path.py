"""What one enqueue request costs the API process, as behaviour: no thread-pool hop, and
concurrent requests sharing `enqueue` script calls."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.queue.queue import JobQueue
from service.queue.states import JobState
from tests.support.enqueue_calls import EnqueueCalls


async def test_an_enqueue_request_runs_nothing_in_the_thread_pool(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # FastAPI runs a plain `def` dependency or route in its thread pool: two thread switches a
    # request, which cost one API process about a tenth of its enqueue rate.
    import fastapi.dependencies.utils
    import fastapi.routing

    hops: list[str] = []

    def counting(real: Any) -> Any:
        async def run(func: Any, *args: Any, **kwargs: Any) -> Any:
            hops.append(getattr(func, "__name__", repr(func)))
            return await real(func, *args, **kwargs)

        return run

    for module in (fastapi.dependencies.utils, fastapi.routing):
        monkeypatch.setattr(module, "run_in_threadpool", counting(module.run_in_threadpool))
    response = await client.post("/jobs/enqueue", json={"type": "noop", "data": {}})
    assert response.status_code == 201, response.text
    refused = await anon.post("/jobs/enqueue", json={"type": "noop", "data": {}})
    assert refused.status_code == 401  # the key check still runs, in the event loop
    assert hops == []


async def test_concurrent_enqueue_requests_share_script_calls(
    app: FastAPI, client: httpx.AsyncClient, queue: JobQueue
) -> None:
    app_queue: JobQueue = app.state.queue
    calls = EnqueueCalls(app_queue.redis, app_queue)
    responses = await asyncio.gather(
        *(client.post("/jobs/enqueue", json={"type": "noop", "data": {}}) for _ in range(30))
    )
    assert [r.status_code for r in responses] == [201] * 30
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 30
    assert sum(calls.jobs_per_call) == 30
    assert len(calls.jobs_per_call) < 30, calls.jobs_per_call
    assert set(await queue.redis.zrange(queue.keys.pending, 0, -1)) == ids
    assert all(job.state is JobState.PENDING for job in await queue.get_many(list(ids)))
