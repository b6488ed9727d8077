"""Exactly one job per tick with a fleet: 3 worker processes and 2 API processes all fire the
same `every_seconds: 1` schedule for 60 s, one worker SIGKILLed and restarted halfway."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from api_harness import api_server

from service.queue.models import JobSpec
from service.queue.queue import JobQueue
from service.queue.schedules import ScheduleSpec
from tests.support.workers import kill_group, running_worker, worker_env

RUN_SECONDS = 60


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_one_job_per_second_for_a_minute_while_a_worker_is_killed(
    queue: JobQueue, redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    first_ms = (int(time.time()) + 8) * 1000  # time for the fleet to start
    last_ms = first_ms + (RUN_SECONDS - 1) * 1000
    spec = ScheduleSpec(
        type="noop",
        every_seconds=1,
        start_at=datetime.fromtimestamp(first_ms / 1000, UTC),
        end_at=datetime.fromtimestamp(last_ms / 1000, UTC),
    )
    await queue.put_schedule("fleet", spec, JobSpec(type="noop"))
    env = worker_env(redis_url, queue_name, worker_count=1)
    with contextlib.ExitStack() as stack:
        workers = [
            stack.enter_context(running_worker(env, tmp_path / f"w{i}.log")) for i in range(3)
        ]
        stack.enter_context(api_server(redis_url, queue_name))
        stack.enter_context(api_server(redis_url, queue_name))
        await asyncio.sleep(max(first_ms / 1000 + RUN_SECONDS / 2 - time.time(), 0))
        kill_group(workers[0])
        stack.enter_context(running_worker(env, tmp_path / "w0-again.log"))
        await asyncio.sleep(max(last_ms / 1000 + 2 - time.time(), 0))
    ids = await queue.redis.zrange(queue.keys.type_index("noop"), 0, -1)
    expected = {f"fleet:{first_ms + i * 1000}" for i in range(RUN_SECONDS)}
    assert sorted(ids) == sorted(expected)
    assert (await queue.get_schedule("fleet")).runs == RUN_SECONDS
