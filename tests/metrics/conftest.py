"""Fixtures for the metrics tests: a queue on a controllable clock, fake AWS credentials."""

from __future__ import annotations

import pytest
from metrics_state import FakeClock

from service.queue.queue import JobQueue, QueueConfig


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def cqueue(queue: JobQueue, clock: FakeClock) -> JobQueue:
    """The test queue (same keys, cleaned up by `queue`) on the fake clock."""
    return JobQueue(queue.redis, queue.keys, QueueConfig(), clock=clock)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials so boto3 never looks for real ones."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
