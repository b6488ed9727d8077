"""Shared fixtures: a real Redis protocol server and an isolated queue per test.

The server is `REDIS_URL` when set (CI has Redis 7 on 127.0.0.1:6379), else an embedded Valkey
started for the session. Never fakeredis: the queue's semantics live in Lua on the server.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from service.queue.keys import QueueKeys
from service.queue.queue import JobQueue, QueueConfig

# Container health records written by in-process brokers and spawned workers (which inherit the
# environment) land in a folder of this test run's, not the machine's shared temporary folder.
os.environ.setdefault("HEALTH_DIR", tempfile.mkdtemp(prefix="jobqueue-test-health-"))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of the Redis/Valkey server the tests use."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    from service.embedded import start_embedded_valkey

    server = start_embedded_valkey(None, persist=False)
    try:
        yield server.connection_url
    finally:
        server.stop()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A client on the test server."""
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def queue_name() -> str:
    """A queue name no other test uses, so tests never see each other's keys."""
    return "t-" + uuid.uuid4().hex[:12]


@pytest.fixture
async def queue(redis: Redis, queue_name: str) -> AsyncIterator[JobQueue]:
    """An empty queue; its keys are deleted afterwards."""
    yield JobQueue(redis, QueueKeys("jqtest", queue_name), QueueConfig())
    await delete_queue_keys(redis, queue_name)


async def delete_queue_keys(redis: Redis, queue_name: str) -> None:
    """Remove every key of a test queue (SCAN, never KEYS)."""
    async for key in redis.scan_iter(match=f"jqtest:{{{queue_name}}}:*", count=1000):
        await redis.delete(key)


async def queue_keys(redis: Redis, queue_name: str) -> set[str]:
    """Every key a test queue has in Redis."""
    return {key async for key in redis.scan_iter(match=f"jqtest:{{{queue_name}}}:*", count=1000)}
