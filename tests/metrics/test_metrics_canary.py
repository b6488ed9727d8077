"""The canary: one noop job per period, and a latency that rises when jobs stop flowing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import boto3
import pytest
from metrics_state import T0, FakeClock
from moto import mock_aws

from service.metrics import contract as c
from service.metrics.canary import canary_id
from service.metrics.collector import collect
from service.metrics.datums import Datum
from service.metrics.publishers import CloudWatchPublisher
from service.metrics.task import MetricsLoop
from service.queue.consumer import Consumer, Outcome
from service.queue.queue import JobQueue, QueueConfig
from service.queue.states import JobState, Priority
from tests.support.workers import running_worker, worker_env


class Recorder:
    """A publisher that keeps what it was given."""

    def __init__(self) -> None:
        self.periods: list[list[Datum]] = []

    def publish(self, datums: Any, at: Any) -> None:
        self.periods.append(list(datums))

    def canary(self, period: int) -> float | None:
        values = [d.value for d in self.periods[period] if d.spec is c.CANARY_LATENCY]
        return values[0] if values else None


def canary_loop(queue: JobQueue, clock: FakeClock, recorder: Recorder) -> MetricsLoop:
    return MetricsLoop(queue, recorder, 60, canary_config=QueueConfig(), clock=clock)


async def run_pending_jobs(queue: JobQueue, clock: FakeClock, start: float, run: float) -> None:
    """A worker takes every pending job at `start` and completes each `run` seconds later."""
    consumer = Consumer(queue, "w", lease_seconds=3600)
    clock.set(start)
    deliveries, _ = await consumer.dequeue(100)
    clock.set(start + run)
    await consumer.finish_many([Outcome(d.job_id, True, "null") for d in deliveries])


async def test_each_period_enqueues_one_critical_noop_canary(
    cqueue: JobQueue, clock: FakeClock
) -> None:
    recorder = Recorder()
    loop = canary_loop(cqueue, clock, recorder)
    clock.set(T0 + 5)
    await loop.tick()
    await loop.tick()  # a second run in the same period (a restart) adds nothing

    [job] = (await cqueue.list_jobs(JobState.PENDING)).items
    assert (job.id, job.type, job.priority) == (canary_id(int(T0 // 60)), "noop", Priority.CRITICAL)
    assert recorder.canary(0) is None  # no earlier canary to judge yet


async def test_latency_of_a_flowing_canary_is_its_end_to_end_time(
    cqueue: JobQueue, clock: FakeClock
) -> None:
    recorder = Recorder()
    loop = canary_loop(cqueue, clock, recorder)
    clock.set(T0 + 5)
    await loop.tick()
    await run_pending_jobs(cqueue, clock, start=T0 + 6.5, run=0.25)  # done 1.75 s after enqueue
    clock.set(T0 + 65)
    await loop.tick()

    assert recorder.canary(1) == pytest.approx(1.75)


async def test_latency_keeps_rising_while_jobs_stop_flowing(
    cqueue: JobQueue, clock: FakeClock
) -> None:
    recorder = Recorder()
    loop = canary_loop(cqueue, clock, recorder)
    for minute in range(4):  # no worker takes anything
        clock.set(T0 + minute * 60 + 5)
        await loop.tick()

    assert [recorder.canary(i) for i in range(4)] == [None, 60.0, 120.0, 180.0]


async def test_canary_is_published_to_cloudwatch_when_enabled(
    cqueue: JobQueue, clock: FakeClock, aws_env: None
) -> None:
    with mock_aws():
        client = boto3.client("cloudwatch", region_name="us-east-1")
        publisher = CloudWatchPublisher(client, cqueue.keys.queue, "test", sleep=lambda _: None)
        loop = MetricsLoop(cqueue, publisher, 60, canary_config=QueueConfig(), clock=clock)
        clock.set(T0 + 5)
        await loop.tick()
        await run_pending_jobs(cqueue, clock, start=T0 + 7, run=1)
        clock.set(T0 + 65)
        await loop.tick()

        points = client.get_metric_statistics(
            Namespace=c.NAMESPACE,
            MetricName=c.CANARY_LATENCY.name,
            Dimensions=[
                {"Name": "Queue", "Value": cqueue.keys.queue},
                {"Name": "Environment", "Value": "test"},
            ],
            StartTime=clock.now - 3600,
            EndTime=clock.now + 60,
            Period=60,
            Statistics=["Maximum"],
        )["Datapoints"]
    assert [p["Maximum"] for p in points] == [3.0]


@pytest.mark.slow
async def test_a_real_worker_completes_the_canary_and_is_counted_live(
    redis_url: str, queue: JobQueue, tmp_path: Any
) -> None:
    # The loop's clock is fixed, then moved a period ahead, so the second tick judges the first
    # tick's canary without waiting a real minute; the queue and the worker use real time.
    base = time.time()
    offset = [0.0]
    recorder = Recorder()
    loop = MetricsLoop(
        queue, recorder, 60, canary_config=QueueConfig(), clock=lambda: base + offset[0]
    )
    env = worker_env(redis_url, queue.keys.queue, WORKER_COUNT=1)
    with running_worker(env, tmp_path / "worker.log"):
        await loop.tick()
        job_id = canary_id(int(base // 60))
        deadline = time.monotonic() + 60
        while (await queue.get(job_id)).state is not JobState.COMPLETED:
            assert time.monotonic() < deadline, "the worker never completed the canary"
            await asyncio.sleep(0.1)
        snapshot = await collect(queue)
        offset[0] = 60.0
        await loop.tick()

    job = await queue.get(job_id)
    assert job.finished_at is not None
    expected = (job.finished_at - job.created_at).total_seconds()
    assert recorder.canary(1) == pytest.approx(expected)
    assert 0 < expected < 60
    assert snapshot.live_workers == 1


async def test_a_canary_removed_by_retention_counts_as_flowing_not_as_silence(
    cqueue: JobQueue, clock: FakeClock
) -> None:
    recorder = Recorder()
    loop = canary_loop(cqueue, clock, recorder)
    clock.set(T0 + 5)
    await loop.tick()
    await run_pending_jobs(cqueue, clock, start=T0 + 6, run=0.1)
    # Retention trims finished jobs when others finish; a busy queue can trim the canary.
    await cqueue.redis.delete(cqueue.keys.job(canary_id(int(T0 // 60))))
    clock.set(T0 + 65)
    await loop.tick()

    assert recorder.canary(1) == 0.0
