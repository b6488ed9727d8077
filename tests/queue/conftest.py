"""Fixtures for the queue tests: the test queue on a clock the test moves by hand."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from service.queue.keys import QueueKeys
from service.queue.queue import JobQueue, QueueConfig
from tests.support.clock import SettableClock


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
def clocked(redis: Redis, queue_name: str, clock: SettableClock, queue: JobQueue) -> JobQueue:
    """The test queue (its keys deleted by `queue`), on the settable clock."""
    return JobQueue(redis, QueueKeys("jqtest", queue_name), QueueConfig(), clock=clock)
