"""Dequeue cost with and without fair-share groups (docs/queue.md "Groups").

Enqueues 20,000 noop jobs (1,000 per call; with `--groups N`, spread over N groups), then drains
them with dequeues of 100, and prints the client-side drain rate and the server-side time per
dequeue (Redis's own `INFO commandstats` for EVALSHA over the drain). It resets the server's
statistics, so point it only at a private server:

    redis-server --port 6441 --save '' --appendonly no &
    uv run python -m bench.group_dequeue --port 6441 --groups 0 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from redis.asyncio import Redis

from service.queue.consumer import Consumer
from service.queue.keys import QueueKeys
from service.queue.models import JobSpec
from service.queue.queue import JobQueue

JOBS, BATCH = 20_000, 100


async def one_round(redis: Redis, groups: int) -> tuple[float, float]:
    """(client seconds spent in dequeue calls, server µs per dequeue call) for one drain."""
    name = "bench-" + uuid.uuid4().hex[:8]
    queue = JobQueue(redis, QueueKeys("jqbench", name))
    for start in range(0, JOBS, 1000):
        # No `group` field at all when ungrouped, so the same script runs on a tree before groups.
        ids = range(start, start + 1000)
        options = [{"group": f"g{i % groups}"} if groups else {} for i in ids]
        await queue.enqueue_many([JobSpec(type="noop", **fields) for fields in options])
    consumer = Consumer(queue, "bench", 300)
    await redis.config_resetstat()
    spent, taken = 0.0, 0
    while taken < JOBS:
        began = time.perf_counter()
        got, _ = await consumer.dequeue(BATCH)
        spent += time.perf_counter() - began
        assert got, f"drained {taken} of {JOBS}"
        taken += len(got)
    stats = (await redis.info("commandstats"))["cmdstat_evalsha"]
    async for key in redis.scan_iter(match=f"jqbench:{{{name}}}*", count=1000):
        await redis.unlink(key)
    return spent, stats["usec"] / stats["calls"]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="a private redis-server's port")
    parser.add_argument("--groups", type=int, default=0, help="0: ungrouped jobs")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    redis = Redis(port=args.port, decode_responses=True)
    try:
        rounds = [await one_round(redis, args.groups) for _ in range(args.rounds)]
    finally:
        await redis.aclose()
    spent = statistics.median(r[0] for r in rounds)
    server_us = statistics.median(r[1] for r in rounds)
    print(
        f"groups={args.groups}: drain {JOBS / spent:,.0f} jobs/s, in Redis {server_us:,.0f} µs "
        f"per dequeue of {BATCH} ({server_us / BATCH:.1f} µs a job), median of {args.rounds}"
    )


if __name__ == "__main__":
    asyncio.run(main())
