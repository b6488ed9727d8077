"""Background loops stop when told to, even though redis-py can swallow a cancellation that
lands inside a command (the command returns normally and the task only stays `cancelling`).

Before the fix, an API app's lifespan hung on shutdown waiting for its schedule ticker, and a
CI run timed out on 37 such teardowns.
"""

from __future__ import annotations

import asyncio
import random

from redis.asyncio import Redis

from service.queue.queue import JobQueue
from service.queue.schedules import ScheduleTicker
from service.queue.wire import cancel_and_wait, reraise_swallowed_cancel
from service.worker.background import every

TRIALS = 100
STOP_SECONDS = 2.0


async def cancel_at_random_moments(start: object) -> None:
    """Start a task, cancel it at a random moment of its Redis traffic, `TRIALS` times; each
    must end within STOP_SECONDS."""
    for _ in range(TRIALS):
        task = asyncio.create_task(start())  # type: ignore[operator]
        await asyncio.sleep(random.uniform(0, 0.01))
        await asyncio.wait_for(cancel_and_wait([task]), STOP_SECONDS)
        assert task.cancelled()


async def test_a_loop_of_redis_calls_that_checks_stops_on_a_single_cancel(redis: Redis) -> None:
    async def loop() -> None:
        while True:
            await redis.zrange("jqtest:no-such-key", 0, 0, withscores=True)
            reraise_swallowed_cancel()

    for _ in range(TRIALS):
        task = asyncio.create_task(loop())
        await asyncio.sleep(random.uniform(0, 0.01))
        task.cancel()  # once: the loop's own check must honour it
        done, _ = await asyncio.wait([task], timeout=STOP_SECONDS)
        assert done, "the loop ran on after its cancel"


async def test_the_schedule_ticker_stops_whenever_it_is_cancelled(queue: JobQueue) -> None:
    await cancel_at_random_moments(lambda: ScheduleTicker(queue, poll_seconds=0).run())


async def test_a_periodic_worker_step_stops_whenever_it_is_cancelled(redis: Redis) -> None:
    async def step() -> None:
        await redis.zrange("jqtest:no-such-key", 0, 0)

    await cancel_at_random_moments(lambda: every(0, step))
