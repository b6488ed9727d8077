"""Each publish of the metrics loop logs exactly one short INFO line (docs/metrics.md), whether
it publishes to CloudWatch (here a recording publisher) or nowhere (CloudWatch off)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import pytest
from metrics_state import T0, FakeClock

from service.metrics.datums import Datum
from service.metrics.task import MetricsLoop, Unpublished, build_publisher
from service.queue.models import JobSpec
from service.queue.queue import JobQueue
from service.settings import Settings


class Recorder:
    """Keeps each publish's data points."""

    def __init__(self) -> None:
        self.publishes: list[list[Datum]] = []

    def publish(self, datums: list[Datum], at: datetime) -> None:
        self.publishes.append(list(datums))


async def enqueue_three(queue: JobQueue, clock: FakeClock) -> None:
    clock.set(T0)
    for _ in range(3):
        await queue.enqueue(JobSpec(type="noop"))


def info_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.name, r.getMessage()) for r in caplog.records if r.levelno == logging.INFO]


async def test_each_publish_logs_one_line_with_the_on_call_figures(
    cqueue: JobQueue, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    await enqueue_three(cqueue, clock)
    recorder = Recorder()
    loop = MetricsLoop(cqueue, recorder, 60, clock=clock)
    stop = asyncio.Event()
    ticks: list[float] = []

    async def sleep(seconds: float) -> None:
        ticks.append(seconds)
        clock.set(clock() + seconds)
        if len(ticks) > 2:
            stop.set()

    with caplog.at_level(logging.DEBUG):
        await loop.run(stop, sleep)  # ticks at T0 + 5 and T0 + 65

    assert len(recorder.publishes) == 2
    first, second = (len(datums) for datums in recorder.publishes)
    figures = "pending=3 running=0 backlog=3 workers=0 completed=0 failed=0"
    assert info_lines(caplog) == [
        ("service.metrics.task", f"metrics: published {first} data points: {figures} "
         "oldest_pending_s=5 wait_p99_ms=0"),
        ("service.metrics.task", f"metrics: published {second} data points: {figures} "
         "oldest_pending_s=65 wait_p99_ms=0"),
    ]  # fmt: skip
    assert all(len(message) < 200 for _, message in info_lines(caplog))


async def test_with_cloudwatch_off_the_loop_line_is_the_only_one(
    cqueue: JobQueue, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    await enqueue_three(cqueue, clock)
    publisher = build_publisher(Settings(environment="test", cloudwatch_enabled=False), False)
    assert isinstance(publisher, Unpublished)  # Prometheus scrapes /metrics; nothing is sent
    clock.set(T0 + 30)

    with caplog.at_level(logging.DEBUG):
        assert await MetricsLoop(cqueue, publisher, 60, clock=clock).tick()

    [(name, message)] = info_lines(caplog)
    assert name == "service.metrics.task"
    assert message.endswith(
        "data points: pending=3 running=0 backlog=3 workers=0 completed=0 failed=0 "
        "oldest_pending_s=30 wait_p99_ms=0"
    )
