"""Flows from taskiq code: FlowStep trees of kiq()-style steps through the broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from service.jobs import load_job_types
from service.queue.errors import InvalidRequestError
from service.queue.queue import JobQueue
from service.queue.states import JobState, Priority
from service.settings import Settings
from service.worker.flow_steps import FlowStep
from service.worker.taskiq_broker import JobQueueBroker


@pytest.fixture
async def broker(queue: JobQueue, redis_url: str) -> AsyncIterator[JobQueueBroker]:
    settings = Settings(redis_url=redis_url, queue_name=queue.keys.queue, key_prefix="jqtest")
    started = JobQueueBroker(settings, registry=load_job_types())
    await started.startup()
    yield started
    await started.shutdown()


async def test_flow_steps_become_jobs_as_kiq_would_make_them(
    broker: JobQueueBroker, queue: JobQueue
) -> None:
    noop = broker.find_task("noop")
    assert noop is not None
    flow = await broker.enqueue_flow(
        FlowStep.of(
            noop,
            priority="high",
            on_child_failure="ignore",
            children=[
                FlowStep.of("noop", {"sleep_seconds": 1}, attempts=1),
                FlowStep.of(noop, retry_on_error=True, max_retries=4),
            ],
        )
    )
    root = await queue.get(flow.root.id)
    assert (root.state, root.priority, root.on_child_failure) == (
        JobState.WAITING_CHILDREN,
        Priority.HIGH,
        "ignore",
    )
    first, second = await queue.get_many([c.id for c in flow.root.children])
    assert (first.data["sleep_seconds"], first.max_attempts) == (1, 1)
    assert second.max_attempts == 5  # taskiq's retry labels read as attempts
    assert {first.parent_id, second.parent_id} == {root.id}


async def test_a_step_whose_task_is_not_a_job_type_is_named(broker: JobQueueBroker) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        await broker.enqueue_flow(FlowStep.of("noop", children=[FlowStep.of("nope")]))
    assert refused.value.details["errors"][0]["field"] == "children[0].task"
