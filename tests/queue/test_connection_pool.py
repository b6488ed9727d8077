"""More concurrent callers than pooled connections wait their turn; a pool that stays busy says
so, instead of reporting a healthy server as unreachable."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from service.jobs import load_job_types
from service.queue.connection import connect
from service.queue.errors import ConnectionPoolExhaustedError
from service.queue.keys import QueueKeys
from service.queue.queue import JobQueue, QueueConfig
from service.queue.states import JobState
from service.queue.wire import POOL_MAX_CONNECTIONS, WaitingConnectionPool, tcp_url_options
from service.settings import Settings
from service.worker.taskiq_broker import JobQueueBroker


async def test_more_concurrent_kiq_calls_than_pooled_connections_all_enqueue(
    queue: JobQueue, redis_url: str
) -> None:
    settings = Settings(redis_url=redis_url, queue_name=queue.keys.queue, key_prefix="jqtest")
    broker = JobQueueBroker(settings, registry=load_job_types())
    await broker.startup()
    try:
        noop = broker.find_task("noop")
        assert noop is not None
        callers = 3 * POOL_MAX_CONNECTIONS
        tasks = await asyncio.gather(*(noop.kiq(data={}) for _ in range(callers)))
        jobs = await queue.get_many([task.task_id for task in tasks])
        assert [job.state for job in jobs] == [JobState.PENDING] * callers
    finally:
        await broker.shutdown()


async def test_a_pool_that_stays_busy_is_reported_as_exhausted_not_unreachable(
    redis_url: str, queue_name: str
) -> None:
    _, url_options = tcp_url_options(redis_url)
    pool = WaitingConnectionPool(
        max_connections=2, wait_seconds=0.2, decode_responses=True, **url_options
    )
    client = Redis.from_pool(pool)
    queue = JobQueue(client, QueueKeys("jqtest", queue_name), QueueConfig())
    holders = [
        asyncio.create_task(client.blpop([f"jqtest:{{{queue_name}}}:never-{i}"], timeout=2))
        for i in range(2)
    ]
    try:
        await asyncio.sleep(0.1)  # both connections are now held by the blocking pops
        with pytest.raises(ConnectionPoolExhaustedError) as refused:
            await queue.counts()
        assert refused.value.code == "connection_pool_exhausted"
        assert "all 2 pooled Redis connections" in refused.value.message
        assert "unreachable" not in refused.value.message
    finally:
        await asyncio.gather(*holders)
        await client.aclose()
    # Once the holders are done the same pool serves again.
    client = Redis.from_pool(pool)
    try:
        assert await client.ping()
    finally:
        await client.aclose()


def test_the_service_client_uses_the_waiting_pool(redis_url: str) -> None:
    client = connect(Settings(redis_url=redis_url))
    assert isinstance(client.connection_pool, WaitingConnectionPool)
