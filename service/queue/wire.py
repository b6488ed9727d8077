"""The connections and pool every client of the service uses.

Connections: redis-py's, packing with hiredis. redis-py's synchronous connections pack commands
with hiredis's C packer when it is installed; its asyncio connections always pack in Python. That
costs about 25 µs for a 23-argument EVALSHA on the benchmark machine, against 3 µs in C, byte for
byte the same output. It is paid on every enqueue, dequeue and finish, and it lies on a job's
start-latency path twice.

Pool: callers beyond its size wait for a connection instead of failing. redis-py's asyncio
`ConnectionPool` raises `MaxConnectionsError` (a `ConnectionError`) for the 101st concurrent
command, which every layer above rightly reads as "Redis is unreachable": 150 concurrent `kiq()`
calls against a healthy server failed that way.

Cancellation: redis-py can swallow one, so loops check for it (`reraise_swallowed_cancel`) and
whoever stops them repeats the cancel until they end (`cancel_and_wait`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import hiredis
from redis.asyncio import BlockingConnectionPool, ConnectionPool
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, MaxConnectionsError
from redis.typing import EncodableT

log = logging.getLogger(__name__)


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


# Connections one client process opens to Redis at most (redis-py's default). A worker's holdings,
# finishes, renewals and blocking pop together stay far below it; a burst of callers beyond it
# waits its turn.
POOL_MAX_CONNECTIONS = 100
# How long a caller waits for a pooled connection before it is told the pool is exhausted. As long
# as a command's own socket timeout: a connection held longer than that is on a dead server.
POOL_WAIT_SECONDS = 10.0


class PoolExhaustedError(MaxConnectionsError):
    """Every connection of the pool stayed busy for the whole wait: this process has more
    concurrent Redis commands than its pool, which says nothing about the server's health."""


class WaitingConnectionPool(BlockingConnectionPool):
    """redis-py's blocking pool, whose timeout says what it is.

    Its own timeout raises a bare `ConnectionError("No connection available.")`, which reads as
    an unreachable server; this one raises `PoolExhaustedError` with the pool's size and wait.
    """

    def __init__(
        self,
        *,
        max_connections: int = POOL_MAX_CONNECTIONS,
        wait_seconds: float = POOL_WAIT_SECONDS,
        **options: Any,
    ) -> None:
        super().__init__(max_connections=max_connections, timeout=wait_seconds, **options)

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        try:
            # redis-py leaves its override untyped.
            connection: AbstractConnection = await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except RedisConnectionError as error:
            # The pool's wait ran out (its TimeoutError is the cause); any other ConnectionError
            # is from connecting and keeps its meaning.
            if isinstance(error.__cause__, asyncio.TimeoutError):
                raise PoolExhaustedError(
                    f"all {self.max_connections} pooled Redis connections of this process stayed "
                    f"busy for {self.timeout:g} s"
                ) from error
            raise
        return connection


def tcp_url_options(url: str) -> tuple[bool, dict[str, Any]]:
    """Whether `url` asks for TLS, and its other options; unix sockets are refused."""
    options: dict[str, Any] = dict(parse_url(url))
    scheme_class = options.pop("connection_class", Connection)
    if scheme_class not in (Connection, SSLConnection):
        raise ValueError(f"expected a redis:// or rediss:// URL, got {url.split(':', 1)[0]}://")
    return scheme_class is SSLConnection, options


def packed_pool(url: str, **options: Any) -> ConnectionPool:
    """A waiting connection pool for `url` (redis:// or rediss://) on PackedConnection."""
    if url.startswith("unix:"):  # local sockets: redis-py's own class, packing in Python
        return WaitingConnectionPool.from_url(url, **options)
    tls, url_options = tcp_url_options(url)
    return WaitingConnectionPool(
        connection_class=PackedSSLConnection if tls else PackedConnection,
        **{**options, **url_options},
    )


def reraise_swallowed_cancel() -> None:
    """Raise CancelledError if the current task was cancelled while a Redis call swallowed it.

    redis-py (8.1 measured) can lose a cancellation that lands inside a command: the command
    returns normally and the task stays marked `cancelling`. A loop that only stops on
    CancelledError then runs on for ever and whoever awaits it hangs; in a loop of cancelled
    ZRANGEs, 126 of 200 cancellations were lost. Every background loop calls this after its
    Redis step, so a stop request is never lost.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


# How often `cancel_and_wait` repeats a cancel a Redis call may have swallowed.
RECANCEL_SECONDS = 0.1


async def cancel_and_wait(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel the tasks and wait until every one has ended, cancelling again any that lives on.

    One cancel is not enough for a task inside a Redis call (see `reraise_swallowed_cancel`):
    a task waiting in a pub/sub read may not reach its next check until a message arrives.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_SECONDS)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            # A loop that died of an error before the stop: say so rather than drop it.
            log.error("background task %s had failed", task.get_name(), exc_info=task.exception())
