"""A full Redis (small maxmemory, noeviction): enqueues are refused with 503 `queue_full`
before Redis refuses everything, a bulk request is all or nothing, and the workers keep
heartbeating and finishing the jobs already accepted."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from taskiq.exceptions import SendTaskError

from service.jobs import load_job_types
from service.queue.consumer import Consumer, Outcome
from service.queue.errors import QueueFullError
from service.queue.keys import QueueKeys
from service.queue.models import JobSpec
from service.queue.queue import JobQueue, QueueConfig
from service.settings import Settings
from service.worker.taskiq_broker import JobQueueBroker
from tests.api.api_harness import API_KEY, api_server
from tests.faults.servers import OwnServer
from tests.support.workers import running_worker, worker_env

pytestmark = pytest.mark.slow

FLOOD_CLIENTS = 6
BULK_SIZE = 200
# The flood stops once this many refusals (or failures of any other kind) were seen.
ENOUGH_ANSWERS = 12
FLOOD_DEADLINE_SECONDS = 60.0


@dataclass
class Flood:
    """What the API answered to a flood of enqueues."""

    accepted_ids: set[str] = field(default_factory=set)
    refusals: list[httpx.Response] = field(default_factory=list)
    other: list[str] = field(default_factory=list)  # anything but 201 or 503 queue_full

    def done(self) -> bool:
        return len(self.refusals) + len(self.other) >= ENOUGH_ANSWERS


async def _one_request(client: httpx.AsyncClient, flood: Flood, bulk: bool) -> None:
    try:
        if bulk:
            jobs = [{"type": "noop", "data": {}} for _ in range(BULK_SIZE)]
            response = await client.post("/jobs/enqueue/bulk", json={"jobs": jobs})
        else:
            response = await client.post("/jobs/enqueue", json={"type": "noop", "data": {}})
    except httpx.TransportError as exc:
        flood.other.append(f"transport error: {exc!r}")
        return
    if response.status_code == 201:
        body = response.json()
        flood.accepted_ids.update(item["id"] for item in body.get("items", [body]))
    elif response.status_code == 503 and response.json()["error"]["code"] == "queue_full":
        flood.refusals.append(response)
    else:
        flood.other.append(f"{response.status_code}: {response.text[:200]}")


async def _flood(base: str) -> Flood:
    flood = Flood()
    deadline = time.monotonic() + FLOOD_DEADLINE_SECONDS

    async def client_loop(index: int) -> None:
        async with httpx.AsyncClient(
            base_url=base, headers={"X-API-Key": API_KEY}, timeout=30
        ) as client:
            turn = index
            while not flood.done() and time.monotonic() < deadline:
                await _one_request(client, flood, bulk=turn % 3 != 0)
                turn += 1

    await asyncio.gather(*(client_loop(i) for i in range(FLOOD_CLIENTS)))
    return flood


async def _stored_ids(redis: Redis, queue_name: str) -> set[str]:
    keys = QueueKeys("jqtest", queue_name)
    return set(await redis.zrange(keys.type_index("noop"), 0, -1))


async def _all_completed(redis: Redis, queue_name: str, count: int) -> bool:
    keys = QueueKeys("jqtest", queue_name)
    return int(await redis.zcard(keys.completed)) >= count


async def _wait_for(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_an_enqueue_flood_gets_queue_full_and_accepted_jobs_still_run(
    small_server: OwnServer, fault_queue: str, tmp_path: Path
) -> None:
    small_server.fill_to(0.84)  # a few thousand jobs below the 90% refusal point
    redis = Redis.from_url(small_server.url, decode_responses=True)
    try:
        with api_server(small_server.url, fault_queue) as base:
            flood = await _flood(base)
            assert flood.other == [], flood.other[:5]
            assert len(flood.refusals) >= ENOUGH_ANSWERS
            for refusal in flood.refusals:
                assert refusal.headers["Retry-After"].isdigit()
                error = refusal.json()["error"]
                assert "ENQUEUE_MAX_MEMORY_SHARE" in error["message"]
                assert error["details"]["used_memory_bytes"] > error["details"]["limit_bytes"]
            # All or nothing: exactly the jobs whose ids were returned exist.
            assert flood.accepted_ids
            assert await _stored_ids(redis, fault_queue) == flood.accepted_ids

            # Still refusing: a worker started now registers, heartbeats and finishes them all.
            env = worker_env(small_server.url, fault_queue, worker_concurrency=50)
            with running_worker(env, tmp_path / "worker.log"):
                await _wait_for(
                    lambda: _all_completed(redis, fault_queue, len(flood.accepted_ids)), 60
                )
                async with httpx.AsyncClient(
                    base_url=base, headers={"X-API-Key": API_KEY}, timeout=30
                ) as client:
                    workers = (await client.get("/jobs/workers")).json()["items"]
                    health = (await client.get("/jobs/health")).json()
                    metrics = (await client.get("/metrics")).text
                    refused = await client.post("/jobs/enqueue", json={"type": "noop"})
            assert len(workers) == 1
            memory = next(c for c in health["checks"] if c["name"] == "memory")
            assert memory["status"] == "unhealthy", memory
            assert f'jobqueue_enqueues_refused{{queue="{fault_queue}"}} 1.0' in metrics
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "queue_full"
    finally:
        await redis.aclose()


def _spec() -> JobSpec:
    return JobSpec(type="noop", data={"sleep_seconds": 0})


async def test_the_python_api_and_kiq_raise_queue_full_while_workers_finish(
    small_server: OwnServer, fault_queue: str
) -> None:
    redis = Redis.from_url(small_server.url, decode_responses=True)
    queue = JobQueue(redis, QueueKeys("jqtest", fault_queue), QueueConfig())
    consumer = Consumer(queue, "w-" + uuid.uuid4().hex[:8], lease_seconds=30)
    settings = Settings(
        environment="test", redis_url=small_server.url, queue_name=fault_queue,
        key_prefix="jqtest",
    )  # fmt: skip
    broker = JobQueueBroker(settings, registry=load_job_types())
    try:
        small_server.fill_to(0.5)
        running = await queue.enqueue(_spec())
        taken, _ = await consumer.dequeue(1)
        assert [d.job_id for d in taken] == [running.job.id]
        small_server.fill_to(0.95)

        with pytest.raises(QueueFullError) as refused:
            await queue.enqueue(_spec())
        assert refused.value.details["used_memory_bytes"] > refused.value.details["limit_bytes"]
        with pytest.raises(QueueFullError):
            await queue.enqueue_many([_spec() for _ in range(50)])
        await broker.startup()
        noop = broker.find_task("noop")
        assert noop is not None
        with pytest.raises(SendTaskError) as kicked:
            await noop.kiq(data={})
        assert isinstance(kicked.value.__cause__, QueueFullError)
        assert await _stored_ids(redis, fault_queue) == {running.job.id}

        # What was accepted keeps working in the headroom: heartbeat and finish.
        info = {"id": consumer.worker_id, "host": "h", "pid": 1, "started": int(time.time() * 1000)}
        await consumer.heartbeat(info, [], 10_000)
        assert [w.id for w in await queue.workers()] == [consumer.worker_id]
        outcome = Outcome(running.job.id, completed=True, payload="null")
        assert await consumer.finish_many([outcome]) == [1]
        assert (await queue.memory()).refusing_enqueues
    finally:
        await broker.shutdown()
        await redis.aclose()


async def test_every_caller_of_a_shared_enqueue_call_gets_queue_full(
    small_server: OwnServer, fault_queue: str
) -> None:
    # Concurrent kiq() calls share one script call (service/queue/enqueue_batch.py), which is
    # all or nothing: refused, it refuses every job in it, and each waiting caller is told.
    settings = Settings(
        environment="test", redis_url=small_server.url, queue_name=fault_queue,
        key_prefix="jqtest",
    )  # fmt: skip
    broker = JobQueueBroker(settings, registry=load_job_types())
    await broker.startup()
    try:
        small_server.fill_to(0.95)
        noop = broker.find_task("noop")
        assert noop is not None
        outcomes = await asyncio.gather(
            *(noop.kiq(data={}) for _ in range(20)), return_exceptions=True
        )
        assert all(isinstance(o, SendTaskError) for o in outcomes), outcomes
        assert all(isinstance(o.__cause__, QueueFullError) for o in outcomes)  # type: ignore[union-attr]
        assert await _stored_ids(broker.queue.redis, fault_queue) == set()
    finally:
        small_server.fill_to(0.0)
        await broker.shutdown()


async def test_redis_refusing_a_write_itself_is_queue_full_too(
    small_server: OwnServer, fault_queue: str
) -> None:
    """With the queue's own check off, Redis's OOM error is still a clear QueueFullError."""
    redis = Redis.from_url(small_server.url, decode_responses=True)
    queue = JobQueue(
        redis, QueueKeys("jqtest", fault_queue), QueueConfig(enqueue_max_memory_share=0)
    )
    admin = small_server.client()
    try:
        small_server.fill_to(0.5)
        used, maxmemory = small_server.memory()
        admin.config_set("maxmemory", used // 2)  # this server only: now over its limit
        with pytest.raises(QueueFullError, match="out of memory"):
            await queue.enqueue_many([_spec() for _ in range(10)])
        assert await _stored_ids(redis, fault_queue) == set()
    finally:
        admin.config_set("maxmemory", maxmemory)
        admin.close()
        await redis.aclose()
