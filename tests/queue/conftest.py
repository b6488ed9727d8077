"""Fixtures for the queue tests: the test queue on a clock the test moves by hand, and
worker-process brokers on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from service.queue.keys import QueueKeys
from service.queue.queue import JobQueue, QueueConfig
from service.worker.taskiq_broker import JobQueueBroker
from tests.support.brokers import worker_broker
from tests.support.clock import SettableClock


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
def clocked(redis: Redis, queue_name: str, clock: SettableClock, queue: JobQueue) -> JobQueue:
    """The test queue (its keys deleted by `queue`), on the settable clock."""
    return JobQueue(redis, QueueKeys("jqtest", queue_name), QueueConfig(), clock=clock)


@pytest.fixture
async def broker_factory(
    redis_url: str, queue: JobQueue
) -> AsyncIterator[Callable[..., JobQueueBroker]]:
    """Worker-process brokers on the test queue, each shut down after the test."""
    made: list[JobQueueBroker] = []

    def make(**settings: Any) -> JobQueueBroker:
        made.append(worker_broker(redis_url, queue, **settings))
        return made[-1]

    yield make
    for broker in made:
        await broker.shutdown()
