"""A bulk enqueue is all or nothing, even when the connection drops in the middle of it."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from service.queue.errors import QueueUnavailableError
from service.queue.models import JobSpec
from service.queue.queue import JobQueue, build_message, now_ms
from tests.conftest import queue_keys
from tests.support.relay import forward


class TruncatingRelay:
    """A TCP relay to the test server that forwards only the first `limit` bytes a client
    sends and then drops both sides, as a network fault in the middle of a request would."""

    def __init__(self, redis_url: str, limit: int) -> None:
        target = urlsplit(redis_url)
        self.target = (target.hostname or "127.0.0.1", target.port or 6379)
        self.limit = limit
        self.forwarded = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        answers = asyncio.create_task(forward(up_reader, writer))
        try:
            while self.forwarded < self.limit and (data := await reader.read(65536)):
                data = data[: self.limit - self.forwarded]
                self.forwarded += len(data)
                up_writer.write(data)
                await up_writer.drain()
            await asyncio.sleep(0.2)  # let the server act on everything it was sent
        finally:
            answers.cancel()
            for side in (writer, up_writer):
                side.close()
            assert self.server is not None
            self.server.close()  # no reconnecting: the fault lasts


@pytest.mark.parametrize("cut_at", [0.1, 0.5, 0.99])
async def test_a_bulk_enqueue_cut_off_midway_writes_nothing(
    redis_url: str, redis: Redis, queue: JobQueue, cut_at: float
) -> None:
    specs = [JobSpec(type="noop", data={"sleep_seconds": 0}) for _ in range(1000)]
    # Scripts cached and the request's size known, through an uncut connection first.
    await queue.enqueue(specs[0])
    before = await queue_keys(redis, queue.keys.queue)
    probe = Redis.from_url(redis_url)
    request_size = len(b"".join(_packed(probe, queue, specs)))
    await probe.aclose()

    relay = TruncatingRelay(redis_url, limit=int(request_size * cut_at))
    cut_client = Redis.from_url(await relay.start(), decode_responses=True)
    try:
        with pytest.raises(QueueUnavailableError):
            await JobQueue(cut_client, queue.keys, queue.config).enqueue_many(specs)
    finally:
        with contextlib.suppress(Exception):
            await cut_client.aclose()
    assert relay.forwarded > 0
    assert await queue_keys(redis, queue.keys.queue) == before
    assert int(await redis.zcard(queue.keys.pending)) == 1


def _packed(client: Redis, queue: JobQueue, specs: list[JobSpec]) -> list[bytes]:
    """The bytes the bulk enqueue's commands take on the wire (ids and times differ from the
    real request's in value, not in length, so the size is that of the request to a few bytes)."""
    connection = client.connection_pool.make_connection()
    jobs = [(job_id, spec, build_message(job_id, spec)) for job_id, spec in
            ((uuid.uuid4().hex, spec) for spec in specs)]  # fmt: skip
    keys, args = queue.scripts.call("enqueue", *queue._enqueue_call(jobs, now_ms(time.time)))
    sha = queue.scripts.sha("enqueue")
    return connection.pack_commands([("EVALSHA", sha, len(keys), *keys, *args)])
