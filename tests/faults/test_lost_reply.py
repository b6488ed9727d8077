"""A reply lost with its connection: the pooled client resends the command, and an enqueue that
the server had already run still reports its jobs as new, each stored once."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

from redis.asyncio import Redis

from service.queue.connection import reconnect_retry
from service.queue.keys import QueueKeys
from service.queue.models import JobSpec
from service.queue.queue import JobQueue, QueueConfig
from service.queue.wire import packed_pool


class ReplyDroppingRelay:
    """Relays to the server, but cuts the first connection whose request names `marker` as soon
    as the server's answer to it arrives: the server ran the command, the client never hears."""

    def __init__(self, redis_url: str, marker: bytes) -> None:
        target = urlsplit(redis_url)
        self.target = (target.hostname or "127.0.0.1", target.port or 6379)
        self.marker = marker
        self.dropped = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        armed = asyncio.Event()
        answers = asyncio.create_task(self._answers(up_reader, writer, armed))
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if self.marker in data and not self.dropped:
                    armed.set()
                up_writer.write(data)
                await up_writer.drain()
        answers.cancel()
        for side in (writer, up_writer):
            side.close()

    async def _answers(
        self, up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter, armed: asyncio.Event
    ) -> None:
        while data := await up_reader.read(65536):
            if armed.is_set():
                self.dropped += 1
                writer.transport.abort()  # the answer dies with the connection
                return
            writer.write(data)
            await writer.drain()


async def test_an_enqueue_whose_reply_was_lost_is_resent_and_still_reported_new(
    redis_url: str, redis: Redis, queue: JobQueue
) -> None:
    sha = queue.scripts.sha("enqueue").encode()
    await queue.enqueue(JobSpec(type="noop"))  # the script is loaded; later calls are EVALSHA
    relay = ReplyDroppingRelay(redis_url, marker=sha)
    client = Redis.from_pool(
        packed_pool(await relay.start(), retry=reconnect_retry(), decode_responses=True)
    )
    try:
        relayed = JobQueue(client, queue.keys, QueueConfig())
        results = await relayed.enqueue_many([JobSpec(type="noop") for _ in range(3)])
    finally:
        await client.aclose()
        await relay.stop()
    assert relay.dropped == 1
    assert [result.created for result in results] == [True, True, True]
    stored = await redis.zrange(QueueKeys("jqtest", queue.keys.queue).pending, 0, -1)
    assert len(stored) == 4  # the first job and these three, each once
    assert {result.job.id for result in results} <= set(stored)
