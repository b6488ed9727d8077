"""Brokers set up as a worker process's, on a test queue, for in-process receiver tests."""

from __future__ import annotations

from typing import Any

from service.queue.queue import JobQueue
from service.settings import Settings
from service.worker.taskiq_broker import JobQueueBroker


def worker_broker(redis_url: str, queue: JobQueue, **settings: Any) -> JobQueueBroker:
    """A broker set up as a worker process's, on the test queue."""
    broker = JobQueueBroker(
        Settings(redis_url=redis_url, queue_name=queue.keys.queue, key_prefix="jqtest", **settings)
    )
    broker.is_worker_process = True
    return broker
