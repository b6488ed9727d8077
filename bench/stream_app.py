"""The comparison point: taskiq-redis's RedisStreamBroker with a no-op task.

Configured from BENCH_REDIS_URL / BENCH_STREAM so the benchmark can point it at its own keys.
"""

from __future__ import annotations

import os
import time

from taskiq_redis import RedisStreamBroker

broker = RedisStreamBroker(
    os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    queue_name=os.environ.get("BENCH_STREAM", "bench-stream"),
    consumer_group_name="bench",
)


@broker.task(task_name="noop")
async def noop() -> None:
    """Does nothing, like our `noop` job type with its default payload."""


@broker.task(task_name="stamp")
async def stamp(enqueued_at: float) -> None:
    """Records start latency (for the fixed-rate latency run only)."""
    redis = broker.connection_pool  # reuse the broker's pool: no extra connection set-up
    from redis.asyncio import Redis

    async with Redis(connection_pool=redis) as client:
        await client.rpush(
            os.environ.get("BENCH_STREAM", "bench-stream") + ":lat", time.time() - enqueued_at
        )
