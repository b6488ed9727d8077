"""Live progress over Server-Sent Events, with a real taskiq worker running the job."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
from api_harness import free_port, parse_sse, worker
from redis.asyncio import Redis
from sse_starlette import ServerSentEvent

from service.api.events import job_event_stream
from service.queue.consumer import Consumer, Outcome
from service.queue.keys import QueueKeys
from service.queue.models import JobSpec
from service.queue.queue import JobQueue
from tests.support.relay import forward

pytestmark = pytest.mark.slow


async def test_events_stream_status_and_progress_until_the_job_ends(
    client: httpx.AsyncClient, redis_url: str, queue_name: str
) -> None:
    job = (
        await client.post(
            "/jobs/enqueue",
            json={"type": "noop", "data": {"sleep_seconds": 1, "progress_steps": 4}},
        )
    ).json()
    with worker(redis_url, queue_name):
        response = await client.get(f"/jobs/{job['id']}/events", timeout=90)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    names = [name for name, _ in events]
    assert names[0] == "status" and events[0][1]["status"] == "pending"
    assert names[-1] == "end"
    progress = [data["progress"] for name, data in events if name == "progress"]
    assert progress == [25, 50, 75, 100]
    statuses = [data["status"] for name, data in events if name == "status"]
    assert "processing" in statuses
    final = events[-1][1]
    assert final["status"] == "completed"
    assert final["result"] == {"attempt": 1, "slept_seconds": 1.0}
    assert final["progress"] == 100


async def test_events_of_a_finished_job_send_one_end_event(client: httpx.AsyncClient) -> None:
    job = (await client.post("/jobs/enqueue", json={"type": "noop"})).json()
    await client.delete(f"/jobs/{job['id']}")
    response = await client.get(f"/jobs/{job['id']}/events")
    events = parse_sse(response.text)
    assert [name for name, _ in events] == ["end"]
    assert events[0][1]["status"] == "cancelled"


async def test_cancelling_a_watched_job_ends_its_stream(client: httpx.AsyncClient) -> None:
    # The stream runs in the app while another request cancels the job.
    job = (await client.post("/jobs/enqueue", json={"type": "noop"})).json()

    async def cancel_soon() -> None:
        await asyncio.sleep(0.5)
        await client.delete(f"/jobs/{job['id']}")

    canceller = asyncio.create_task(cancel_soon())
    response = await client.get(f"/jobs/{job['id']}/events", timeout=30)
    await canceller
    events = parse_sse(response.text)
    assert [name for name, _ in events] == ["status", "end"]
    assert events[-1][1]["status"] == "cancelled"


class CuttableProxy:
    """A TCP relay to the test Redis that can be cut, as a failover or a network fault would."""

    def __init__(self, redis_url: str) -> None:
        target = urlsplit(redis_url)
        self.target = (target.hostname or "127.0.0.1", target.port or 6379)
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, up_writer]
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await forward(reader, writer)
        writer.close()

    def cut(self) -> None:
        assert self.server is not None
        self.server.close()  # no new connections: reconnecting fails too
        for writer in self.writers:
            writer.close()


@pytest.fixture
async def proxied_queue(
    redis_url: str, queue: JobQueue
) -> AsyncIterator[tuple[JobQueue, CuttableProxy]]:
    """The test queue, reached through a relay the test can cut."""
    proxy = CuttableProxy(redis_url)
    port = await proxy.start()
    redis = Redis.from_url(f"redis://127.0.0.1:{port}/0", decode_responses=True)
    try:
        yield JobQueue(redis, queue.keys, queue.config), proxy
    finally:
        with contextlib.suppress(Exception):
            await redis.aclose()


async def test_redis_lost_mid_stream_ends_it_with_an_error_event(
    queue: JobQueue, proxied_queue: tuple[JobQueue, CuttableProxy]
) -> None:
    # The response has started, so no 503 is possible: the stream must say why it ends
    # instead of breaking off (which clients cannot tell from a network fault).
    remote, proxy = proxied_queue
    job = (await queue.enqueue(JobSpec(type="noop"))).job
    stream = job_event_stream(remote, job.id, max_seconds=60, poll_seconds=0.2)
    first = await anext(stream)
    assert first.event == "status"
    proxy.cut()
    rest = await asyncio.wait_for(_collect(stream), timeout=30)
    assert [event.event for event in rest] == ["error"]
    assert json.loads(rest[0].data)["code"] == "queue_unavailable"


async def test_redis_down_before_subscribing_sends_one_error_event(queue_name: str) -> None:
    redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        down = JobQueue(redis, QueueKeys("jqtest", queue_name))
        events = await _collect(job_event_stream(down, "abc", max_seconds=5, poll_seconds=0.2))
    finally:
        await redis.aclose()
    assert [event.event for event in events] == ["error"]


async def _collect(stream: AsyncIterator[ServerSentEvent]) -> list[ServerSentEvent]:
    return [event async for event in stream]


async def collect_stream(queue: JobQueue, job_id: str, logs: bool) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    events = []
    async for event in job_event_stream(queue, job_id, max_seconds=30, poll_seconds=5, logs=logs):
        assert isinstance(event, ServerSentEvent)
        events.append((str(event.event), json.loads(str(event.data))))
    return events


async def test_log_lines_reach_the_stream_once_each_in_order_and_before_the_end(
    queue: JobQueue, redis: Redis
) -> None:
    """Lines logged before the stream opened come first, then each new one as it is logged,
    one that a dropped pub/sub message missed is filled in from the list, and the last line,
    logged right before the finish, comes before `end`."""
    consumer = Consumer(queue, "w1", 30)
    job_id = (await queue.enqueue(JobSpec(type="noop"))).job.id
    await consumer.dequeue(1)
    assert [await consumer.log(job_id, f"line {n}") for n in (1, 2)] == [1, 2]
    stream = asyncio.create_task(collect_stream(queue, job_id, logs=True))
    await asyncio.sleep(0.3)  # subscribed, and the kept lines sent
    await consumer.log(job_id, "line 3")
    # Line 4 is stored but its message is lost (as on a pub/sub reconnect); line 5 reveals it.
    await redis.rpush(queue.keys.logs(job_id), "line 4")
    await redis.hincrby(queue.keys.job(job_id), "logs_total", 1)
    await consumer.log(job_id, "line 5")
    await consumer.log(job_id, "line 6")
    await consumer.finish_many([Outcome(job_id, True, "null")])
    events = await asyncio.wait_for(stream, 10)
    lines = [(data["index"], data["line"]) for name, data in events if name == "log"]
    assert lines == [(n, f"line {n}") for n in range(1, 7)]
    assert events[-1][0] == "end" and events[-1][1]["status"] == "completed"
    assert [name for name, _ in events].index("end") == len(events) - 1


async def test_without_logs_the_stream_sends_only_new_lines(queue: JobQueue) -> None:
    consumer = Consumer(queue, "w1", 30)
    job_id = (await queue.enqueue(JobSpec(type="noop"))).job.id
    await consumer.dequeue(1)
    await consumer.log(job_id, "before")
    stream = asyncio.create_task(collect_stream(queue, job_id, logs=False))
    await asyncio.sleep(0.3)
    await consumer.log(job_id, "after")
    await consumer.finish_many([Outcome(job_id, True, "null")])
    events = await asyncio.wait_for(stream, 10)
    assert [(name, data.get("line")) for name, data in events if name != "status"] == [
        ("log", "after"),
        ("end", None),
    ]
