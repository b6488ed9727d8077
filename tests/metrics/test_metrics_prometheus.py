"""`/metrics` renders the same snapshot as CloudWatch, under names derived from the contract."""

from __future__ import annotations

from metrics_state import FakeClock, build_known_state, spec
from prometheus_client.parser import text_string_to_metric_families

from service.metrics import contract as c
from service.metrics.collector import collect
from service.metrics.prometheus import prometheus_name, render_prometheus
from service.queue.models import MemoryUsage
from service.queue.queue import JobQueue


def test_names_are_derived_from_the_contract() -> None:
    assert prometheus_name(c.QUEUE_DEPTH) == "jobqueue_queue_depth"
    assert prometheus_name(c.OLDEST_PENDING_AGE) == "jobqueue_oldest_pending_age_seconds"
    assert prometheus_name(c.JOB_WAIT_P99) == "jobqueue_job_wait_time_p99_milliseconds"


async def test_exposition_carries_every_value_of_a_known_state(
    cqueue: JobQueue, clock: FakeClock
) -> None:
    known = await build_known_state(cqueue, clock)
    snapshot = await collect(cqueue)

    body, content_type = render_prometheus(snapshot, "q1")

    assert content_type.startswith("text/plain; version=")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    assert samples[("jobqueue_queue_depth", (("queue", "q1"),))] == 10
    assert samples[("jobqueue_backlog_per_worker", (("queue", "q1"),))] == 5
    assert samples[("jobqueue_jobs_failed", (("queue", "q1"),))] == known.failed
    for priority, n in known.depth_by_priority.items():
        key = ("jobqueue_queue_depth_by_priority", (("priority", priority), ("queue", "q1")))
        assert samples[key] == n
    for job_type, n in known.depth_by_type.items():
        key = ("jobqueue_queue_depth_by_type", (("job_type", job_type), ("queue", "q1")))
        assert samples[key] == n
    assert samples[("jobqueue_job_run_time_p99_milliseconds", (("queue", "q1"),))] == 300
    names = {name for name, _ in samples}
    assert names == {prometheus_name(m) for m in c.ALL_METRICS if m is not c.CANARY_LATENCY}


async def test_registered_types_without_jobs_are_exposed_as_zero(cqueue: JobQueue) -> None:
    await cqueue.enqueue(spec("alpha"))
    snapshot = await collect(cqueue)

    body, _ = render_prometheus(snapshot, "q1", job_types=["alpha", "email-sending"])

    depth = {
        s.labels["job_type"]: s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name == "jobqueue_queue_depth_by_type"
    }
    assert depth == {"alpha": 1, "email-sending": 0}


async def test_redis_memory_and_the_enqueue_limit_are_exposed(cqueue: JobQueue) -> None:
    snapshot = await collect(cqueue)
    memory = MemoryUsage.of(used=95, maxmemory=100, share=0.9)

    body, _ = render_prometheus(snapshot, "q1", memory=memory)

    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.labels == {"queue": "q1"}
    }
    assert samples["jobqueue_redis_memory_used_bytes"] == 95
    assert samples["jobqueue_redis_memory_max_bytes"] == 100
    assert samples["jobqueue_enqueue_memory_limit_bytes"] == 90
    assert samples["jobqueue_enqueues_refused"] == 1
