"""Cluster mode: connections pinned to the primary that owns the queue's hash slot.

Every key of a queue carries the queue name as its hash tag (keys.py), so the whole queue lives in
one slot, on one primary. A cluster client that routes each command would add nothing for one
queue, and redis-py's `RedisCluster` refuses what the queue relies on: pipelined EVALSHA (dequeue
behind a blocking pop) and MULTI/EXEC (bulk enqueue). So instead each pooled connection asks the
configuration endpoint which primary serves the slot (`CLUSTER SLOTS`) and connects there; the
queue's code runs unchanged.

When the slot moves (failover, resharding) the old node answers MOVED, ASK, TRYAGAIN or
CLUSTERDOWN. Each of those means the command was *not* run, so the connection drops, reconnects
to the new owner and the command is sent again, a few times with backoff. If the cluster is still
unsettled after that the caller sees an ordinary redis-py `ConnectionError`, which the worker
retries and the API answers with 503.

Resending is safe during a migration of the slot too. A node serves a multi-key command mid-
migration only if it still holds every key named, and every queue script names a key *prefix*
(`jq:{q}:job:`) that never exists as a key. So the node refuses each script with ASK or TRYAGAIN
until the move ends; no script ever runs half on one node.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import ConnectionPool
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,
    ResponseError,
    TryAgainError,
)

from service.queue.wire import (
    PackedConnection,
    PackedSSLConnection,
    WaitingConnectionPool,
    tcp_url_options,
)

# Replies that say "not here, not now": the command was refused, never applied.
_SLOT_ELSEWHERE = (AskError, TryAgainError, ClusterDownError)  # MovedError is an AskError
# A failover or a slot migration settles within seconds; this spans about 3 s of retries before the
# caller hears of it, so a routine move is invisible and a longer outage is not hidden.
REDIRECT_RETRIES = 6
REDIRECT_BACKOFF = ExponentialWithJitterBackoff(base=0.05, cap=1.0)


class QueueSlotMovedError(ConnectionError):
    """The queue's slot is served by another node now; the command was not run."""


class QueueSlotConnection(PackedConnection):
    """A connection to the primary that owns `queue_slot`, not to the configured host, that
    turns redirects into a reconnect."""

    _probe_class: type[Connection] = PackedConnection

    def __init__(self, *, queue_slot: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.queue_slot = queue_slot
        self._probe_kwargs = kwargs
        self._entry = (kwargs.get("host", "localhost"), int(kwargs.get("port", 6379)))

    async def _connect(self) -> None:
        host, port = await self._slot_owner()
        self.host, self.port = host, port
        await super()._connect()  # type: ignore[no-untyped-call]

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except _SLOT_ELSEWHERE as error:
            await self.disconnect(nowait=True)
            raise QueueSlotMovedError(
                f"slot {self.queue_slot} answered {type(error).__name__} ({error}); "
                "reconnecting to its owner"
            ) from error

    async def _slot_owner(self) -> tuple[str, int]:
        """Ask the configuration endpoint which primary serves the slot."""
        entry_host, entry_port = self._entry
        probe = self._probe_class(**{**self._probe_kwargs, "host": entry_host, "port": entry_port})
        try:
            await probe.connect()  # type: ignore[no-untyped-call]
            await probe.send_command("CLUSTER", "SLOTS")
            slots = await probe.read_response()
        except ResponseError as error:
            raise ConnectionError(
                f"REDIS_CLUSTER is set but {entry_host}:{entry_port} is not a cluster: {error}"
            ) from error
        finally:
            await probe.disconnect()
        return owner_of(self.queue_slot, slots, entry_host)


class QueueSlotSSLConnection(QueueSlotConnection, PackedSSLConnection):
    """Over TLS (ElastiCache's in-transit encryption): SSLConnection's `_connect` runs after the
    slot lookup, by method order."""

    _probe_class = PackedSSLConnection


def owner_of(slot: int, cluster_slots: list[Any], entry_host: str) -> tuple[str, int]:
    """Host and port of the primary serving `slot`, from a `CLUSTER SLOTS` reply.

    Each entry is `[first, last, [endpoint, port, id, ...], replica...]`. A node that does not know
    its own endpoint reports "" or "?"; it is then the node we asked, reached by the name we used.
    """
    for first, last, primary, *_replicas in cluster_slots:
        if int(first) <= slot <= int(last):
            endpoint = _text(primary[0])
            return (endpoint if endpoint not in ("", "?") else entry_host), int(primary[1])
    raise ConnectionError(f"no primary serves slot {slot}: the cluster is down or resharding")


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return value or ""


def queue_slot_pool(url: str, queue_slot: int, **options: Any) -> ConnectionPool:
    """A pool whose connections all go to the primary that serves `queue_slot`."""
    tls, url_options = tcp_url_options(url)
    return WaitingConnectionPool(
        connection_class=QueueSlotSSLConnection if tls else QueueSlotConnection,
        queue_slot=queue_slot,
        retry=Retry(REDIRECT_BACKOFF, REDIRECT_RETRIES, supported_errors=(QueueSlotMovedError,)),
        **{**options, **url_options},
    )
