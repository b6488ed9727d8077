"""Paging holds at 100,000 jobs: every listing walked to its end by cursor gives each job once,
in its order, and no page costs more the further in it is.

The jobs come from `enqueue_many` on a frozen clock, so all 100,000 share one creation
millisecond: the hardest case for a cursor of (creation ms, id), since every page starts in
the middle of one 100,000-entry tie (before lua/page-1.lua, page k read all k pages before it).
A server of the test's own (embedded Valkey), so the shared one is not filled or blocked.
Timings per page are printed (run with -s), not asserted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from api_harness import API_KEY, app_settings

from service.api.app import create_app
from service.queue.connection import connect
from service.queue.keys import QueueKeys
from service.queue.models import JobSpec
from service.queue.queue import JobQueue, QueueConfig
from tests.faults.servers import OwnServer
from tests.support.clock import SettableClock

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

JOBS = 100_000
CHUNK = 10_000  # per enqueue_many call: one script run of ~0.2 s
TYPES = ("noop", "data-processing")
PAGE = 500
QUEUE = "paging"


@pytest.fixture(scope="module")
def server() -> Iterator[OwnServer]:
    own = OwnServer()
    own.start()
    try:
        yield own
    finally:
        own.stop()


@pytest.fixture(scope="module")
async def enqueued(server: OwnServer) -> list[str]:
    """The ids of the 100,000 jobs, in enqueue order (types alternate)."""
    settings = app_settings(server.url, QUEUE)
    redis = connect(settings)
    queue = JobQueue(redis, QueueKeys("jqtest", QUEUE), QueueConfig(), clock=SettableClock())
    ids: list[str] = []
    started = time.perf_counter()
    for first in range(0, JOBS, CHUNK):
        specs = [JobSpec(type=TYPES[i % 2], data={"n": i}) for i in range(first, first + CHUNK)]
        ids += [result.job.id for result in await queue.enqueue_many(specs)]
    print(f"\nenqueue_many: {JOBS} jobs in {time.perf_counter() - started:.1f} s")
    await redis.aclose()
    return ids


@pytest.fixture
async def client(server: OwnServer, enqueued: list[str]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(app_settings(server.url, QUEUE))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api.test", headers={"X-API-Key": API_KEY}
        ) as http:
            yield http


async def walk(client: httpx.AsyncClient, path: str, **params: Any) -> list[str]:
    """Every id of a listing, following its cursor to the end; prints the page timings."""
    ids: list[str] = []
    timings: list[float] = []
    cursor: str | None = None
    while True:
        query = {**params, "limit": PAGE, **({"cursor": cursor} if cursor else {})}
        started = time.perf_counter()
        response = await client.get(path, params=query)
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
        page = response.json()
        ids += [job["id"] for job in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    ms = [t * 1000 for t in timings]
    print(
        f"{path} {params}: {len(timings)} pages, first {ms[0]:.0f} ms, median "
        f"{statistics.median(ms):.0f} ms, last {ms[-1]:.0f} ms, max {max(ms):.0f} ms"
    )
    return ids


async def test_every_listing_pages_through_all_jobs_once_in_order(
    client: httpx.AsyncClient, enqueued: list[str]
) -> None:
    # All jobs share one creation ms: creation order is then the id order (reversed for
    # newest first), as the type indexes keep ties.
    by_id = sorted(enqueued)
    assert await walk(client, "/jobs") == by_id[::-1]
    assert await walk(client, "/jobs", sort="created") == by_id
    noop = sorted(enqueued[0::2])
    assert await walk(client, "/jobs", type="noop") == noop[::-1]
    assert await walk(client, "/jobs", state="pending", type="data-processing") == sorted(
        enqueued[1::2], reverse=True
    )
    assert await walk(client, "/jobs", state="completed") == []
    # Pending jobs list in run order: FIFO within their one priority, i.e. enqueue order.
    assert await walk(client, "/jobs/pending") == enqueued
    assert await walk(client, "/jobs/noop/jobs", status="pending") == noop[::-1]


async def test_the_dashboards_first_page_loads_at_that_size(
    client: httpx.AsyncClient, enqueued: list[str]
) -> None:
    """What the dashboard's job list asks first (newest 50 of every state and type), and the
    overview's stats."""
    started = time.perf_counter()
    first = await client.get("/jobs", params={"limit": 50})
    stats = await client.get("/jobs/stats")
    print(f"dashboard first page + stats: {(time.perf_counter() - started) * 1000:.0f} ms")
    assert first.status_code == 200 and stats.status_code == 200
    assert [job["id"] for job in first.json()["items"]] == sorted(enqueued, reverse=True)[:50]
    assert stats.json()["counts"]["pending"] == JOBS
