"""The loop ticks on period boundaries, survives failing ticks and stops promptly."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from metrics_state import T0, FakeClock, in_own_thread

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
from tests.support.dead_redis import dead_redis


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
    dead = dead_redis()
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


class FailingFirst(Recorder):
    """A publisher whose first publish fails the way CloudWatch does when it is down."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.failures_left = 1

    def publish(self, datums: list[Datum], at: datetime) -> None:
        if self.failures_left:
            self.failures_left -= 1
            reply = {
                "Error": {"Code": "InternalFailure", "Message": "try later"},
                "ResponseMetadata": {"HTTPStatusCode": 500},
            }
            raise ClientError(reply, "PutMetricData")  # type: ignore[arg-type]
        super().publish(datums, at)


async def test_a_transient_aws_error_is_logged_and_the_next_periods_publish(
    cqueue: JobQueue, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    clock.set(T0 + 17)
    publisher = FailingFirst(clock)
    stop = asyncio.Event()
    slept: list[float] = []

    with caplog.at_level(logging.ERROR, logger="service.metrics.task"):
        await MetricsLoop(cqueue, publisher, 60, clock=clock).run(
            stop, fake_sleep(clock, stop, ticks=3, slept=slept)
        )

    offset = TICK_OFFSET_SECONDS
    assert publisher.times == [T0 + 120 + offset, T0 + 180 + offset]  # the first one failed
    [record] = caplog.records
    assert "publishing" in record.getMessage() and "failed" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], ClientError)


async def test_a_transient_redis_error_is_logged_with_its_cause(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    dead = dead_redis()
    queue = JobQueue(dead, QueueKeys("jqtest", "dead"), QueueConfig(), clock=clock)
    stop = asyncio.Event()
    try:
        with caplog.at_level(logging.ERROR, logger="service.metrics.task"):
            await MetricsLoop(queue, Recorder(clock), 60, clock=clock).run(
                stop, fake_sleep(clock, stop, ticks=2, slept=[])
            )
    finally:
        await dead.aclose()  # type: ignore[attr-defined, unused-ignore]

    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["metrics: cannot read the queue, nothing published this period"] * 2
    assert all(r.exc_info is not None for r in caplog.records)


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
