"""The history rollup (service/metrics/history.py) and GET /jobs/stats/history, on real Redis.

The finish script's per-minute counters and samples are written here as it writes them, under
the test queue's own keys, and the queue's clock is pinned so minutes close on demand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from service.api.errors import install_error_handlers
from service.api.ui.routes import router
from service.metrics.history import HOUR_TTL_SECONDS, MINUTE_TTL_SECONDS, fold, series
from service.queue.queue import JobQueue
from tests.conftest import queue_keys

KEY = "history-test-key"
# 10 s into an hour's 30th minute.
NOW_MINUTE = 29_000_000 * 60 + 30
NOW = NOW_MINUTE * 60 + 10.0


async def finish_jobs(
    queue: JobQueue, minute: int, completed: int, failed: int, waits: list[int]
) -> None:
    """What the finish script leaves for `minute`: counters and (wait, run) samples."""
    await queue.redis.hset(
        queue.keys.stats_minute(minute), mapping={"completed": completed, "failed": failed}
    )
    for wait in waits:
        await queue.redis.lpush(queue.keys.samples, f"{wait} 5")


@pytest.fixture
def pinned(queue: JobQueue) -> JobQueue:
    queue.clock = lambda: NOW
    return queue


async def test_closed_minutes_fold_into_minutes_and_their_hour_once(pinned: JobQueue) -> None:
    await finish_jobs(pinned, NOW_MINUTE - 2, completed=4, failed=1, waits=[10, 20, 30, 40])
    await finish_jobs(pinned, NOW_MINUTE - 1, completed=2, failed=0, waits=[100, 300])
    await finish_jobs(pinned, NOW_MINUTE, completed=7, failed=7, waits=[])  # still open

    # Two folders at once (two API processes, or the API and the metrics loop).
    first, second = await asyncio.gather(fold(pinned), fold(pinned))
    assert first + second == 119  # every closed minute still counted, each by one folder
    assert await fold(pinned) == 0

    bucket, minutes = await series(pinned, "1h")
    assert bucket == 60 and len(minutes) == 60
    last, before = minutes[-1], minutes[-2]
    assert last.start == (NOW_MINUTE - 1) * 60
    assert (last.completed, last.failed) == (2, 0)
    # The newest samples are the last minute's: its wait is 100 and 300.
    assert last.wait_ms == {50: 100, 95: 300, 99: 300}
    assert (before.completed, before.failed) == (4, 1)
    assert minutes[0].wait_ms == {50: None, 95: None, 99: None}

    bucket, hours = await series(pinned, "24h")
    assert bucket == 3600 and len(hours) == 24
    this_hour = hours[-1]
    assert this_hour.start == (NOW_MINUTE // 60) * 3600
    assert (this_hour.completed, this_hour.failed) == (6, 1)  # not the open minute's 7
    assert this_hour.wait_ms[50] is not None
    _, week = await series(pinned, "7d")
    assert len(week) == 168


async def test_the_next_minute_folds_when_it_closes(pinned: JobQueue) -> None:
    await fold(pinned)
    await finish_jobs(pinned, NOW_MINUTE, completed=3, failed=2, waits=[7, 8, 9])
    pinned.clock = lambda: NOW + 60
    assert await fold(pinned) == 1
    _, minutes = await series(pinned, "1h")
    assert (minutes[-1].completed, minutes[-1].failed) == (3, 2)
    assert minutes[-1].wait_ms[50] == 8


async def test_memory_is_bounded_by_ttls(pinned: JobQueue, redis: Redis, queue_name: str) -> None:
    await finish_jobs(pinned, NOW_MINUTE - 1, completed=1, failed=0, waits=[1])
    await fold(pinned)
    history = [key for key in await queue_keys(redis, queue_name) if ":history:" in key]
    minute_keys = [key for key in history if ":history:m:" in key]
    hour_keys = [key for key in history if ":history:h:" in key]
    assert len(minute_keys) == 119 and 1 <= len(hour_keys) <= 3
    for key in minute_keys:
        assert 0 < await redis.ttl(key) <= MINUTE_TTL_SECONDS
    for key in hour_keys:
        assert 0 < await redis.ttl(key) <= HOUR_TTL_SECONDS


@pytest.fixture
async def client(pinned: JobQueue) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    app.state.queue = pinned
    app.state.api_keys = [KEY.encode()]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://ui.test", headers={"X-API-Key": KEY}
    ) as http:
        yield http


async def test_endpoint_serves_each_range(client: httpx.AsyncClient, pinned: JobQueue) -> None:
    await finish_jobs(pinned, NOW_MINUTE - 1, completed=5, failed=1, waits=[50] * 5)
    response = await client.get("/jobs/stats/history", params={"range": "7d"})
    assert response.status_code == 200
    body = response.json()
    assert body["range"] == "7d" and body["bucket_seconds"] == 3600 and len(body["points"]) == 168
    assert body["points"][-1] | {"start": 0} == {
        "start": 0,
        "completed": 5,
        "failed": 1,
        "retried": 0,
        "wait_p50_ms": 50,
        "wait_p95_ms": 50,
        "wait_p99_ms": 50,
    }
    assert len((await client.get("/jobs/stats/history")).json()["points"]) == 60


async def test_endpoint_refuses_bad_ranges_and_missing_keys(client: httpx.AsyncClient) -> None:
    response = await client.get("/jobs/stats/history", params={"range": "30d"})
    assert response.status_code == 422
    assert "range" in response.text
    assert (await client.get("/jobs/stats/history", headers={"X-API-Key": ""})).status_code in (
        401,
        403,
    )
