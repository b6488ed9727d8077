"""Byte relays for tests that stand something between a client and the test server."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
import threading
from urllib.parse import urlsplit

from service.queue.scripts import script_source


async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes from `reader` to `writer` until end of stream or a broken connection."""
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


def script_sha(name: str) -> bytes:
    """The SHA1 a client sends with EVALSHA for one of the queue's scripts (what SlowingRelay
    looks for to slow that script's calls)."""
    return hashlib.sha1(script_source(name).encode()).hexdigest().encode()


class SlowingRelay:
    """A TCP relay to a Redis server that holds back the reply to every request naming `marker`
    (e.g. one script's SHA) for `delay` seconds, so that one kind of call is slow on purpose
    while every other goes straight through. The server runs the call at once: only its answer
    is late, as with a busy network or a worker whose event loop is slow to read it. `delay`
    can be changed at any time (0 lets everything through).

    It runs on a thread with its own event loop, so it keeps relaying while the test blocks
    (waiting for a worker process to exit, say)."""

    def __init__(self, redis_url: str, marker: bytes, delay: float) -> None:
        target = urlsplit(redis_url)
        self.target = (target.hostname or "127.0.0.1", target.port or 6379)
        self.marker = marker
        self.delay = delay
        self.held_back = 0  # replies delayed so far
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> str:
        """Listen on a free port; returns the URL clients should use."""
        self._thread.start()
        listening = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, "127.0.0.1", 0), self._loop
        )
        self._server = listening.result(10)
        return f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"

    def stop(self) -> None:
        """Stop listening, cut every relayed connection and end the thread."""
        asyncio.run_coroutine_threadsafe(self._shut(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _shut(self) -> None:
        if self._server is not None:
            self._server.close()
        current = asyncio.current_task()
        others = [task for task in asyncio.all_tasks() if task is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        owed = [0]  # replies still to hold back on this connection
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        pumps = [
            asyncio.create_task(self._requests(reader, up_writer, owed)),
            asyncio.create_task(self._replies(up_reader, writer, owed)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            for side in (writer, up_writer):
                side.close()

    async def _requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, owed: list[int]
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if self.delay > 0 and self.marker in data:
                    owed[0] += 1
                writer.write(data)
                await writer.drain()

    async def _replies(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, owed: list[int]
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if owed[0] > 0:
                    owed[0] -= 1
                    self.held_back += 1
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
