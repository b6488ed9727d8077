"""The connection classes every client of the service uses: redis-py's, packing with hiredis.

redis-py's synchronous connections pack commands with hiredis's C packer when it is installed;
its asyncio connections always pack in Python. That costs about 25 µs for a 23-argument EVALSHA
on the benchmark machine, against 3 µs in C, byte for byte the same output. It is paid on every
enqueue, dequeue and finish, and it lies on a job's start-latency path twice.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio import ConnectionPool
from redis.asyncio.connection import Connection, SSLConnection, parse_url
from redis.exceptions import DataError
from redis.typing import EncodableT


class PackedConnection(Connection):
    """A TCP connection whose commands are packed by hiredis."""

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        # As redis-py does: a command name with spaces ("CLUSTER SLOTS") is several arguments.
        first = args[0]
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])
        elif isinstance(first, bytes) and b" " in first:
            args = (*first.split(), *args[1:])
        try:
            # hiredis's stub types the argument as a 1-tuple; it takes any length.
            return [hiredis.pack_command(args)]  # type: ignore[arg-type]
        except TypeError as error:  # None, bool...: redis-py's own error for bad input
            raise DataError(f"invalid argument in a {first!r} command: {error}") from error


class PackedSSLConnection(PackedConnection, SSLConnection):
    """The same over TLS: SSLConnection's connect, by method order."""


def tcp_url_options(url: str) -> tuple[bool, dict[str, Any]]:
    """Whether `url` asks for TLS, and its other options; unix sockets are refused."""
    options: dict[str, Any] = dict(parse_url(url))
    scheme_class = options.pop("connection_class", Connection)
    if scheme_class not in (Connection, SSLConnection):
        raise ValueError(f"expected a redis:// or rediss:// URL, got {url.split(':', 1)[0]}://")
    return scheme_class is SSLConnection, options


def packed_pool(url: str, **options: Any) -> ConnectionPool:
    """A connection pool for `url` (redis:// or rediss://) on PackedConnection."""
    if url.startswith("unix:"):  # local sockets: redis-py's own class, packing in Python
        return ConnectionPool.from_url(url, **options)
    tls, url_options = tcp_url_options(url)
    return ConnectionPool(
        connection_class=PackedSSLConnection if tls else PackedConnection,
        **{**options, **url_options},
    )
