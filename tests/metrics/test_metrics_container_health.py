"""The metrics task feeds its container health check: only a successful publish renews it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from metrics_state import T0, FakeClock
from moto import mock_aws

from service import healthcheck
from service.metrics.publishers import CloudWatchPublisher
from service.metrics.task import HEALTH_FRESH_PERIODS, TICK_OFFSET_SECONDS, MetricsLoop
from service.queue.queue import JobQueue


@pytest.fixture
def health_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(healthcheck.HEALTH_DIR_ENV, str(tmp_path))
    return tmp_path


@pytest.fixture
def cloudwatch(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("cloudwatch", region_name="us-east-1")


class Refusing:
    """A CloudWatch client that refuses every PutMetricData (not retryable)."""

    def put_metric_data(self, **_: Any) -> Any:
        error = {"Code": "AccessDenied", "Message": "no"}
        raise ClientError(
            {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 403}},  # type: ignore[typeddict-item]
            "PutMetricData",
        )


def own_record(directory: Path) -> dict[str, Any]:
    return dict(json.loads((directory / f"metrics-{os.getpid()}.json").read_text()))


async def test_a_publish_records_a_fresh_healthy_metrics_process(
    cqueue: JobQueue, clock: FakeClock, cloudwatch: Any, health_dir: Path
) -> None:
    loop = MetricsLoop(cqueue, CloudWatchPublisher(cloudwatch, "q", "test"), 60, clock=clock)
    assert healthcheck.check("metrics", health_dir)[0] is False  # nothing published yet

    clock.set(T0 + 5)
    assert await loop.tick()

    record = own_record(health_dir)
    assert record["healthy"] is True
    assert record["fresh_for"] == HEALTH_FRESH_PERIODS * 60 + TICK_OFFSET_SECONDS
    assert "published" in record["detail"]
    assert healthcheck.check("metrics", health_dir) == (True, "1 metrics process(es) healthy")
    # A loop that stopped publishing goes stale once the promised lifetime has passed.
    later = record["written_at"] + record["fresh_for"] + 1
    healthy, why = healthcheck.check("metrics", health_dir, now=later)
    assert not healthy
    assert "stuck" in why


async def test_a_failed_publish_does_not_renew_the_record(
    cqueue: JobQueue, clock: FakeClock, aws_env: None, health_dir: Path
) -> None:
    publisher = CloudWatchPublisher(Refusing(), "q", "test", sleep=lambda _: None)  # type: ignore[arg-type]
    loop = MetricsLoop(cqueue, publisher, 60, clock=clock)
    clock.set(T0 + 5)
    assert not await loop.tick()
    assert not (health_dir / f"metrics-{os.getpid()}.json").exists()
