"""The metrics task publishes every contract metric, with the right values, every period."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from metrics_state import T0, FakeClock, KnownState, build_known_state, in_own_thread, spec
from moto import mock_aws

from service.metrics import contract as c
from service.metrics.datums import Datum
from service.metrics.publishers import (
    MAX_METRICS_PER_CALL,
    MAX_PAYLOAD_BYTES,
    CloudWatchPublisher,
    PrintPublisher,
    batches,
    encoded_size,
    metric_data,
)
from service.metrics.task import MetricsLoop, registered_job_types, run_metrics
from service.queue.keys import QueueKeys
from service.queue.queue import JobQueue, QueueConfig
from service.settings import Settings
from tests.support.dead_redis import dead_redis

ENV = "test"


@pytest.fixture
def cloudwatch(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("cloudwatch", region_name="us-east-1")


def stats(client: Any, queue_name: str, spec_: c.MetricSpec, extra: str | None = None) -> list[Any]:
    dims = [{"Name": "Queue", "Value": queue_name}, {"Name": "Environment", "Value": ENV}]
    if extra is not None:
        assert spec_.extra_dimension is not None
        dims.append({"Name": spec_.extra_dimension.value, "Value": extra})
    reply = client.get_metric_statistics(
        Namespace=c.NAMESPACE,
        MetricName=spec_.name,
        Dimensions=dims,
        StartTime=datetime.fromtimestamp(T0 - 3600, tz=UTC),
        EndTime=datetime.fromtimestamp(T0 + 3600, tz=UTC),
        Period=60,
        Statistics=["Maximum", "SampleCount"],
        Unit=spec_.unit.value,
    )
    return list(reply["Datapoints"])


def only_value(points: list[Any]) -> float:
    assert sum(p["SampleCount"] for p in points) == 1, points
    return float(points[0]["Maximum"])


def expected_values(known: KnownState) -> dict[tuple[str, str | None], float]:
    values: dict[tuple[str, str | None], float] = {
        (c.QUEUE_DEPTH.name, None): known.depth,
        (c.DELAYED_JOBS.name, None): known.delayed,
        (c.ACTIVE_JOBS.name, None): known.active,
        (c.RESERVED_JOBS.name, None): known.reserved,
        (c.OLDEST_PENDING_AGE.name, None): known.oldest_pending_age,
        (c.JOBS_COMPLETED.name, None): known.completed,
        (c.JOBS_FAILED.name, None): known.failed,
        (c.JOBS_RETRIED.name, None): known.retried,
        (c.LIVE_WORKERS.name, None): known.live_workers,
        (c.BACKLOG_PER_WORKER.name, None): known.depth / known.live_workers,
        (c.QUEUE_BACKLOG.name, None): known.backlog,
        (c.LIVE_WORKER_TASKS.name, None): known.live_tasks,
        (c.BACKLOG_PER_TASK.name, None): known.backlog / known.live_tasks,
        (c.STALLED_WORKERS.name, None): known.stalled_workers,
        (c.GROUPS_WITH_BACKLOG.name, None): known.groups_with_backlog,
        (c.LARGEST_GROUP_SHARE.name, None): known.largest_group_share,
        (c.JOB_WAIT_P50.name, None): known.wait_ms[0],
        (c.JOB_WAIT_P99.name, None): known.wait_ms[1],
        (c.JOB_RUN_P50.name, None): known.run_ms[0],
        (c.JOB_RUN_P99.name, None): known.run_ms[1],
    }
    for priority, n in known.depth_by_priority.items():
        values[(c.QUEUE_DEPTH_BY_PRIORITY.name, priority)] = n
    for job_type, n in known.depth_by_type.items():
        values[(c.QUEUE_DEPTH_BY_TYPE.name, job_type)] = n
    return values


def all_metrics(client: Any) -> list[Any]:
    pages = client.get_paginator("list_metrics").paginate(Namespace=c.NAMESPACE)
    return [metric for page in pages for metric in page["Metrics"]]


def published_series(client: Any) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    metrics = all_metrics(client)
    return {
        (m["MetricName"], frozenset((d["Name"], d["Value"]) for d in m["Dimensions"]))
        for m in metrics
    }


def make_loop(queue: JobQueue, client: Any, clock: FakeClock, **kwargs: Any) -> MetricsLoop:
    publisher = CloudWatchPublisher(client, queue.keys.queue, ENV, sleep=lambda _: None)
    return MetricsLoop(queue, publisher, 60, clock=clock, **kwargs)


async def test_publish_of_a_known_state_gives_exactly_its_values_for_every_metric(
    cqueue: JobQueue, clock: FakeClock, cloudwatch: Any
) -> None:
    known = await build_known_state(cqueue, clock)
    loop = make_loop(cqueue, cloudwatch, clock)

    assert await loop.tick()

    name = cqueue.keys.queue
    expected = expected_values(known)
    for (metric, extra), value in expected.items():
        points = stats(cloudwatch, name, c.METRICS_BY_NAME[metric], extra)
        assert only_value(points) == value, metric
    # Nothing else was published, every series carries exactly its contract dimensions,
    # and every contract metric but the (disabled) canary is among them.
    base = {("Queue", name), ("Environment", ENV)}
    assert published_series(cloudwatch) == {
        (
            metric,
            frozenset(
                base
                | (
                    {(c.METRICS_BY_NAME[metric].extra_dimension.value, extra)}
                    if extra is not None and c.METRICS_BY_NAME[metric].extra_dimension
                    else set()
                )
            ),
        )
        for metric, extra in expected
    }
    assert {m for m, _ in expected} == {m.name for m in c.ALL_METRICS} - {c.CANARY_LATENCY.name}
    assert loop.publisher.calls == 1  # type: ignore[attr-defined]


async def test_period_counters_are_stamped_with_the_minute_they_count(
    cqueue: JobQueue, clock: FakeClock, cloudwatch: Any
) -> None:
    await build_known_state(cqueue, clock)
    await make_loop(cqueue, cloudwatch, clock).tick()

    [completed] = stats(cloudwatch, cqueue.keys.queue, c.JOBS_COMPLETED)
    [depth] = stats(cloudwatch, cqueue.keys.queue, c.QUEUE_DEPTH)
    assert completed["Timestamp"] == datetime.fromtimestamp(T0 - 60, tz=UTC)
    assert depth["Timestamp"] == datetime.fromtimestamp(T0 + 5, tz=UTC)  # the tick's time


async def test_an_empty_queue_publishes_zeros_for_every_metric(
    cqueue: JobQueue, clock: FakeClock, cloudwatch: Any
) -> None:
    clock.set(T0 + 5)
    assert await make_loop(cqueue, cloudwatch, clock).tick()

    name = cqueue.keys.queue
    for spec_ in c.ALL_METRICS:
        if spec_ in (c.CANARY_LATENCY, c.QUEUE_DEPTH_BY_TYPE):
            continue  # canary off; no job type has ever been seen
        extras = c.PRIORITY_DIMENSION_VALUES if spec_.extra_dimension else (None,)
        for extra in extras:
            assert only_value(stats(cloudwatch, name, spec_, extra)) == 0.0, spec_.name


async def test_registered_job_types_publish_a_zero_depth_before_their_first_job(
    cqueue: JobQueue, clock: FakeClock, cloudwatch: Any
) -> None:
    await cqueue.enqueue_many([spec("alpha") for _ in range(2)])
    clock.set(T0 + 5)
    loop = make_loop(cqueue, cloudwatch, clock, job_types=["alpha", "image-processing", "noop"])

    assert await loop.tick()

    name = cqueue.keys.queue
    by_type = {
        job_type: only_value(stats(cloudwatch, name, c.QUEUE_DEPTH_BY_TYPE, job_type))
        for job_type in ("alpha", "image-processing", "noop")
    }
    assert by_type == {"alpha": 2.0, "image-processing": 0.0, "noop": 0.0}
    type_series = {
        dict(dims)["JobType"] for metric, dims in published_series(cloudwatch)
        if metric == c.QUEUE_DEPTH_BY_TYPE.name
    }  # fmt: skip
    assert type_series == {"alpha", "image-processing", "noop"}  # one series each, no repeats


def test_the_metrics_task_knows_the_registered_types(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(environment="test", job_modules="no_such_module_for_metrics")
    # An unimportable JOB_MODULES entry costs its types' zero series, not the task.
    assert {"data-processing", "image-processing", "email-sending", "report-generation"} <= set(
        registered_job_types(settings)
    )
    assert "cannot import JOB_MODULES" in caplog.text


async def test_every_period_publishes_again(
    cqueue: JobQueue, clock: FakeClock, cloudwatch: Any
) -> None:
    loop = make_loop(cqueue, cloudwatch, clock)
    for minute in range(3):
        clock.set(T0 + minute * 60 + 5)
        assert await loop.tick()

    points = stats(cloudwatch, cqueue.keys.queue, c.QUEUE_DEPTH)
    assert sorted(p["Timestamp"] for p in points) == [
        datetime.fromtimestamp(T0 + m * 60 + 5, tz=UTC) for m in range(3)
    ]


class Flaky:
    """A CloudWatch client whose first `failures` PutMetricData calls raise `code`."""

    def __init__(self, client: Any, failures: int, code: str = "Throttling", status: int = 400):
        self.client, self.failures, self.code, self.status = client, failures, code, status
        self.attempts = 0

    def put_metric_data(self, **kwargs: Any) -> Any:
        self.attempts += 1
        if self.attempts <= self.failures:
            error = {"Error": {"Code": self.code, "Message": "Rate exceeded"}}
            raise ClientError(
                {**error, "ResponseMetadata": {"HTTPStatusCode": self.status}},  # type: ignore[typeddict-item]
                "PutMetricData",
            )
        return self.client.put_metric_data(**kwargs)


async def test_a_throttled_publish_is_retried_with_growing_backoff(
    cqueue: JobQueue, clock: FakeClock, cloudwatch: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("service.metrics.publishers.random.random", lambda: 1.0)
    flaky = Flaky(cloudwatch, failures=2)
    sleeps: list[float] = []
    publisher = CloudWatchPublisher(flaky, cqueue.keys.queue, ENV, sleep=sleeps.append)  # type: ignore[arg-type]
    clock.set(T0 + 5)

    assert await MetricsLoop(cqueue, publisher, 60, clock=clock).tick()

    assert flaky.attempts == 3
    assert sleeps == [0.5, 1.0]
    assert only_value(stats(cloudwatch, cqueue.keys.queue, c.QUEUE_DEPTH)) == 0


async def test_a_publish_failing_for_good_is_reported_and_the_next_period_publishes(
    cqueue: JobQueue, clock: FakeClock, cloudwatch: Any
) -> None:
    flaky = Flaky(cloudwatch, failures=1, code="AccessDenied", status=403)
    publisher = CloudWatchPublisher(flaky, cqueue.keys.queue, ENV, sleep=lambda _: None)  # type: ignore[arg-type]
    loop = MetricsLoop(cqueue, publisher, 60, clock=clock)
    clock.set(T0 + 5)
    assert not await loop.tick()  # not retryable: one attempt, reported as a failure
    assert flaky.attempts == 1
    clock.set(T0 + 65)
    assert await loop.tick()
    assert len(stats(cloudwatch, cqueue.keys.queue, c.QUEUE_DEPTH)) == 1


async def test_redis_down_is_reported_and_the_loop_survives(
    redis_url: str, clock: FakeClock, cloudwatch: Any
) -> None:
    dead = dead_redis()
    queue = JobQueue(dead, QueueKeys("jqtest", "dead"), QueueConfig(), clock=clock)
    try:
        assert not await make_loop(queue, cloudwatch, clock).tick()
    finally:
        await dead.aclose()  # type: ignore[attr-defined, unused-ignore]
    assert all_metrics(cloudwatch) == []


def test_batches_respect_the_count_limit(cloudwatch: Any) -> None:
    datums = [Datum(c.QUEUE_DEPTH_BY_TYPE, i, f"type-{i}") for i in range(2500)]
    publisher = CloudWatchPublisher(cloudwatch, "q", ENV, sleep=lambda _: None)

    publisher.publish(datums, datetime.fromtimestamp(T0, tz=UTC))

    assert publisher.calls == 3
    assert len(all_metrics(cloudwatch)) == 2500


def test_batches_respect_the_payload_limit() -> None:
    long_types = [Datum(c.QUEUE_DEPTH_BY_TYPE, 1, f"{i:04d}" + "t" * 1000) for i in range(1000)]
    entries = metric_data(
        long_types,
        datetime.fromtimestamp(T0, tz=UTC),
        {c.Dimension.QUEUE: "q", c.Dimension.ENVIRONMENT: ENV},
    )

    split = batches(entries)

    assert len(split) >= 2
    assert all(len(b) <= MAX_METRICS_PER_CALL for b in split)
    assert all(sum(encoded_size(e) for e in b) <= MAX_PAYLOAD_BYTES for b in split)
    assert sum(len(b) for b in split) == 1000


async def test_dry_run_prints_the_requests_instead_of_sending_them(
    cqueue: JobQueue, clock: FakeClock
) -> None:
    await cqueue.enqueue_many([spec("x") for _ in range(4)])
    out = io.StringIO()
    clock.set(T0 + 5)

    assert await MetricsLoop(
        cqueue, PrintPublisher(cqueue.keys.queue, ENV, out), 60, clock=clock
    ).tick()

    [request] = [json.loads(line) for line in out.getvalue().splitlines()]
    assert request["Namespace"] == c.NAMESPACE
    depth = [m for m in request["MetricData"] if m["MetricName"] == c.QUEUE_DEPTH.name]
    assert depth[0]["Value"] == 4.0
    assert depth[0]["Dimensions"] == [
        {"Name": "Queue", "Value": cqueue.keys.queue},
        {"Name": "Environment", "Value": ENV},
    ]


async def test_run_metrics_once_publishes_through_the_configured_client(
    redis_url: str, queue_name: str, cloudwatch: Any
) -> None:
    settings = Settings(
        redis_url=redis_url, queue_name=queue_name, key_prefix="jqtest", environment="test",
        cloudwatch_enabled=True, aws_region="us-east-1",
    )  # fmt: skip

    assert await in_own_thread(run_metrics, settings, once=True) == 0

    names = {m["MetricName"] for m in all_metrics(cloudwatch)}
    assert c.QUEUE_DEPTH.name in names
    assert c.BACKLOG_PER_WORKER.name in names


async def test_run_metrics_once_fails_when_the_publish_fails(
    redis_url: str, queue_name: str, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No mock: point the client at a closed port so every attempt fails fast.
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", "http://127.0.0.1:1")
    # (Its retries back off for real: at most 0.5 + 1 + 2 s.)
    settings = Settings(
        redis_url=redis_url, queue_name=queue_name, key_prefix="jqtest", environment="test",
        cloudwatch_enabled=True,
    )  # fmt: skip

    assert await in_own_thread(run_metrics, settings, once=True) == 1


# PutMetricData takes points at most two weeks old and at most two hours ahead of its own clock.
CLOUDWATCH_OLDEST = timedelta(days=14)
CLOUDWATCH_NEWEST = timedelta(hours=2)


class SentMetricData:
    """A CloudWatch client that keeps every MetricData entry it sends."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.sent: list[dict[str, Any]] = []

    def put_metric_data(self, **request: Any) -> Any:
        self.sent += request["MetricData"]
        return self.client.put_metric_data(**request)


async def test_timestamps_fit_cloudwatch_window(
    cqueue: JobQueue, clock: FakeClock, cloudwatch: Any
) -> None:
    # The period counters carry the minute they count (from Redis's millisecond stamps), the
    # gauges the tick's time: every one must land in the window CloudWatch accepts.
    await build_known_state(cqueue, clock)
    recorder = SentMetricData(cloudwatch)
    assert await make_loop(cqueue, recorder, clock).tick()

    now = datetime.now(tz=UTC)
    assert recorder.sent
    for datum in recorder.sent:
        stamp = datum["Timestamp"]
        assert now - CLOUDWATCH_OLDEST < stamp < now + CLOUDWATCH_NEWEST, datum["MetricName"]
        assert abs(stamp - datetime.fromtimestamp(T0, tz=UTC)) <= timedelta(minutes=2), datum
