"""The same job options stored the same way whichever path they came by: the HTTP API, kiq()
labels, JobQueue.enqueue, the CLI (its request body) and a job type's defaults.

service/queue/options.py states the options and their limits once; this is the test that they
hold for every path (a 600 s backoff used to be 300 s through kiq() labels).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import httpx
from redis.asyncio import Redis

from service.cli import build_parser
from service.cli.client import enqueue_body
from service.jobs import JobTypeDefaults, load_job_types
from service.queue.options import Backoff, JobOptions, Retention
from service.queue.queue import JobQueue
from service.queue.states import Priority
from service.settings import Settings
from service.worker.taskiq_broker import JobQueueBroker

# Every option a job may set, each away from its default; a backoff above the default cap.
BACKOFF = {"type": "fixed", "delay_seconds": 600, "jitter": 0}
HTTP_OPTIONS: dict[str, Any] = {
    "priority": "high",
    "delay_seconds": 30,
    "attempts": 4,
    "backoff": BACKOFF,
    "timeout_seconds": 45,
    "group": "tenant-42",
}
# What differs by path by design: the id, when it was enqueued, and the idempotency key (each
# path's own, or the paths would find each other's job).
PER_JOB_FIELDS = {"created", "due", "timeline", "idem"}


async def stored(redis: Redis, queue: JobQueue, job_id: str) -> dict[str, Any]:
    """The job's hash as stored, with its message parsed and its own id and times left out."""
    raw = await redis.hgetall(queue.keys.job(job_id))
    fields: dict[str, Any] = {k: v for k, v in raw.items() if k not in PER_JOB_FIELDS}
    message = json.loads(fields.pop("msg"))
    assert message.pop("task_id") == job_id
    message["labels"] = {
        k: json.loads(v) if k == "backoff" else v
        for k, v in message["labels"].items()
        if k != "idempotency_key"
    }
    fields["msg"] = message
    fields["wait_ms"] = int(raw["due"]) - int(raw["created"])
    return fields


async def via_http(client: httpx.AsyncClient) -> str:
    reply = await client.post(
        "/jobs/enqueue", json={"type": "noop", **HTTP_OPTIONS, "idempotency_key": "http"}
    )
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


async def via_cli_body(client: httpx.AsyncClient) -> str:
    # The CLI's part of its path: turning its flags into the request body it sends.
    flags = ["--priority", "high", "--delay", "30", "--attempts", "4", "--timeout", "45"]
    flags += ["--group", "tenant-42"]
    argv = ["enqueue", "noop", *flags, "--backoff", json.dumps(BACKOFF), "--idempotency-key", "cli"]
    reply = await client.post("/jobs/enqueue", json=enqueue_body(build_parser().parse_args(argv)))
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


async def via_kiq(settings: Settings) -> str:
    broker = JobQueueBroker(settings, registry=load_job_types())
    await broker.startup()
    try:
        task = broker.find_task("noop")
        assert task is not None
        kicked = await (
            task.kicker()
            .with_labels(
                priority="high",
                delay=30,
                attempts=4,
                timeout=45,
                backoff=json.dumps(BACKOFF),
                idempotency_key="kiq",
                group="tenant-42",
            )
            .kiq(data={})
        )
        return kicked.task_id
    finally:
        await broker.shutdown()


async def via_queue(queue: JobQueue) -> str:
    options = JobOptions(
        priority=Priority.HIGH,
        delay_seconds=30,
        attempts=4,
        backoff=Backoff(**BACKOFF),  # type: ignore[arg-type]
        timeout_seconds=45,
        idempotency_key="queue",
        group="tenant-42",
    )
    spec = load_job_types().get("noop").build_spec({}, queue.config, options)
    return (await queue.enqueue(spec)).job.id


async def via_type_defaults(queue: JobQueue) -> str:
    defaults = JobTypeDefaults(
        attempts=4,
        backoff=Backoff(**BACKOFF),  # type: ignore[arg-type]
        timeout_seconds=45,
        priority=Priority.HIGH,
    )
    noop = dataclasses.replace(load_job_types().get("noop"), defaults=defaults)
    spec = noop.build_spec(
        {}, queue.config, delay_seconds=30, idempotency_key="defaults", group="tenant-42"
    )
    return (await queue.enqueue(spec)).job.id


async def test_every_path_stores_the_same_job_field_by_field(
    client: httpx.AsyncClient, settings: Settings, queue: JobQueue, redis: Redis
) -> None:
    ids = {  # by the idempotency key each path sent
        "http": await via_http(client),
        "cli": await via_cli_body(client),
        "kiq": await via_kiq(settings),
        "queue": await via_queue(queue),
        "defaults": await via_type_defaults(queue),
    }
    jobs = {path: await stored(redis, queue, job_id) for path, job_id in ids.items()}

    reference = jobs["http"]
    for path, job in jobs.items():
        assert set(job) == set(reference), path
        for field in reference:
            assert job[field] == reference[field], f"{path}: {field}"
    # And it is the job that was asked for: 600 s between retries, not a default cap's 300.
    assert reference["wait_ms"] == 30_000
    assert reference["priority"] == str(int(Priority.HIGH))
    assert reference["max_attempts"] == "4"
    assert reference["group"] == "tenant-42"
    assert reference["msg"]["labels"]["backoff"] == {**BACKOFF, "max_delay_seconds": 600}
    assert Backoff.model_validate(reference["msg"]["labels"]["backoff"]).delay_for(3) == 600
    for key, job_id in ids.items():
        assert await redis.hget(queue.keys.job(job_id), "idem") == key


async def test_retention_is_the_same_through_the_api_the_queue_and_type_defaults(
    client: httpx.AsyncClient, queue: JobQueue, redis: Redis
) -> None:
    reply = await client.post(
        "/jobs/enqueue",
        json={"type": "noop", "remove_on_complete": 5, "remove_on_fail": {"count": 7, "age": 60}},
    )
    assert reply.status_code == 201, reply.text
    noop = load_job_types().get("noop")
    by_options = noop.build_spec(
        {}, queue.config, remove_on_complete=5, remove_on_fail={"count": 7, "age": 60}
    )
    by_defaults = dataclasses.replace(
        noop,
        defaults=dataclasses.replace(
            noop.defaults,
            keep_completed=Retention(count=5),
            keep_failed=Retention(count=7, age_seconds=60),
        ),
    ).build_spec({}, queue.config)
    ids = [reply.json()["id"], (await queue.enqueue(by_options)).job.id]
    ids.append((await queue.enqueue(by_defaults)).job.id)
    for job_id in ids:
        raw = await redis.hgetall(queue.keys.job(job_id))
        assert (raw["keep_completed"], raw["keep_failed"]) == ("5,-1", "7,60"), job_id
