"""A Redis restart costs no request once Redis answers: pooled connections that died with the
old server are replaced and the command resent."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import redis

from tests.api.api_harness import API_KEY, api_server
from tests.faults.servers import OwnServer, own_server

pytestmark = pytest.mark.slow

PARALLEL = 20


async def _parallel_enqueues(client: httpx.AsyncClient) -> list[int]:
    responses = await asyncio.gather(
        *(client.post("/jobs/enqueue", json={"type": "noop"}) for _ in range(PARALLEL))
    )
    return [response.status_code for response in responses]


def _wait_until_redis_answers(server: OwnServer, timeout: float = 20.0) -> float:
    started = time.monotonic()
    while True:
        try:
            with redis.Redis.from_url(server.url, socket_timeout=1) as client:
                client.ping()
            return time.monotonic() - started
        except redis.ConnectionError:
            assert time.monotonic() - started < timeout, "Redis did not come back"
            time.sleep(0.05)


async def test_requests_after_a_restart_all_succeed(fault_queue: str) -> None:
    with (
        own_server() as server,
        api_server(server.url, fault_queue) as base,
    ):
        async with httpx.AsyncClient(
            base_url=base, headers={"X-API-Key": API_KEY}, timeout=30
        ) as client:
            # Fill the API's pool with connections, all of which the restart kills.
            assert await _parallel_enqueues(client) == [201] * PARALLEL
            server.restart()
            _wait_until_redis_answers(server)
            assert await _parallel_enqueues(client) == [201] * PARALLEL
            assert (await client.get("/jobs/stats")).json()["counts"]["pending"] == PARALLEL
