"""The loop ticks on period boundaries, survives failing ticks and stops promptly."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import pytest
from metrics_state import T0, FakeClock, in_own_thread
from redis.asyncio import Redis

from service.metrics import contract as c
from service.metrics.datums import Datum
from service.metrics.task import (
    TICK_OFFSET_SECONDS,
    MetricsLoop,
    metrics_main,
    run_metrics,
    stop_aware_sleep,
)
from service.queue.keys import QueueKeys
from service.queue.queue import JobQueue, QueueConfig
from service.settings import Settings


class Recorder:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.times: list[float] = []

    def publish(self, datums: list[Datum], at: datetime) -> None:
        self.times.append(self.clock())


def fake_sleep(clock: FakeClock, stop: asyncio.Event, ticks: int, slept: list[float]) -> Any:
    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.set(clock() + seconds)
        if len(slept) > ticks:
            stop.set()

    return sleep


async def test_ticks_land_just_after_each_period_boundary(
    cqueue: JobQueue, clock: FakeClock
) -> None:
    clock.set(T0 + 17)
    recorder = Recorder(clock)
    stop = asyncio.Event()
    slept: list[float] = []
    loop = MetricsLoop(cqueue, recorder, 60, clock=clock)

    await loop.run(stop, fake_sleep(clock, stop, ticks=3, slept=slept))

    offset = TICK_OFFSET_SECONDS
    assert recorder.times == [T0 + 60 + offset, T0 + 120 + offset, T0 + 180 + offset]
    assert slept[0] == 60 + offset - 17


async def test_a_failing_tick_does_not_stop_the_loop(clock: FakeClock) -> None:
    dead = Redis(host="127.0.0.1", port=1, decode_responses=True, socket_connect_timeout=1)
    queue = JobQueue(dead, QueueKeys("jqtest", "dead"), QueueConfig(), clock=clock)
    stop = asyncio.Event()
    slept: list[float] = []
    try:
        await MetricsLoop(queue, Recorder(clock), 60, clock=clock).run(
            stop, fake_sleep(clock, stop, ticks=2, slept=slept)
        )
    finally:
        await dead.aclose()  # type: ignore[attr-defined, unused-ignore]

    assert len(slept) == 3  # it went on sleeping and ticking after each failure


async def test_stop_interrupts_the_wait_at_once() -> None:
    stop = asyncio.Event()
    sleep = stop_aware_sleep(stop)
    asyncio.get_running_loop().call_later(0.05, stop.set)

    await asyncio.wait_for(sleep(3600), timeout=5)

    assert stop.is_set()


async def test_an_embedded_loop_ends_when_its_caller_sets_stop(
    redis_url: str, queue_name: str
) -> None:
    settings = Settings(
        redis_url=redis_url, queue_name=queue_name, key_prefix="jqtest", environment="test"
    )
    stop = asyncio.Event()
    task = asyncio.create_task(metrics_main(settings, stop=stop))
    await asyncio.sleep(0.1)
    stop.set()

    assert await asyncio.wait_for(task, timeout=5) == 0


async def test_dry_run_once_prints_requests_to_stdout(
    redis_url: str, queue_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(
        redis_url=redis_url, queue_name=queue_name, key_prefix="jqtest", environment="test",
        cloudwatch_enabled=True,  # --dry-run wins: nothing may reach AWS
    )  # fmt: skip

    assert await in_own_thread(run_metrics, settings, once=True, dry_run=True) == 0

    [line] = capsys.readouterr().out.splitlines()
    request = json.loads(line)
    assert request["Namespace"] == c.NAMESPACE
    assert {m["MetricName"] for m in request["MetricData"]} >= {c.QUEUE_DEPTH.name}
