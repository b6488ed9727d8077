"""Building Redis clients and queues from settings."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from service.queue.cluster import queue_slot_pool
from service.queue.keys import QueueKeys
from service.queue.models import Retention
from service.queue.queue import JobQueue, QueueConfig
from service.queue.wire import packed_pool
from service.settings import Settings

# Client-side timeouts: a command that takes longer than this against a healthy server means the
# server is gone, and callers should get a clear "unavailable" rather than hang. Blocking commands
# (BZPOPMIN) pass their own, longer timeout on top of this.
SOCKET_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5.0
# After a Redis restart or failover every pooled connection is dead, and each would fail the
# first command sent on it. A command that fails with a connection error is sent again on a new
# connection, up to 3 times within about 0.7 s, so a restart costs no request once Redis answers
# while an outage still surfaces quickly as 503.
RECONNECT_RETRIES = 3
RECONNECT_BACKOFF = ExponentialWithJitterBackoff(base=0.1, cap=1.0)
# Idle connections are checked with a PING before reuse after this long: a connection the
# server or a NAT dropped in silence is replaced before a command is lost on it.
HEALTH_CHECK_INTERVAL_SECONDS = 30


def reconnect_retry(retries: int = RECONNECT_RETRIES) -> Retry:
    """Resend on connection errors only, never on timeouts.

    A connection error almost always means the command never reached a live server (a stale
    pooled connection after a restart). Where its answer was lost instead, resending still
    corrupts nothing: an enqueue of an id that exists returns it (and queue.py knows the id as
    its own), a stale finish or renewal is ignored, a resent cancel finds the job cancelled, and
    a resent BZPOPMIN + dequeue leaves the first batch leased until the sweeper hands it back,
    as the worker's own retry after an outage would. A timeout is not resent: the server may
    still be running the command, and a BZPOPMIN that outlives its socket timeout is a dead
    server, not a reason to wait again.
    """
    return Retry(RECONNECT_BACKOFF, retries, supported_errors=(RedisConnectionError,))


def connect(settings: Settings) -> Redis:
    """A pooled async client for the configured server (TLS with `rediss://` / REDIS_TLS).

    With REDIS_CLUSTER the server is a cluster's configuration endpoint, and every connection
    goes to the primary that owns the queue's hash slot (see cluster.py).
    """
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": SOCKET_TIMEOUT_SECONDS + settings.idle_block_seconds,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_INTERVAL_SECONDS,
    }
    url = settings.resolved_redis_url()
    if settings.redis_cluster:
        # The cluster pool's Retry covers slot redirects (about 3 s); redis-py adds
        # `retry_on_error` to it, so a dead connection to the slot's owner is resent too.
        slot = queue_keys(settings).cluster_slot
        pool = queue_slot_pool(url, slot, retry_on_error=[RedisConnectionError], **options)
        return Redis.from_pool(pool)
    return Redis.from_pool(packed_pool(url, retry=reconnect_retry(), **options))


def queue_config(settings: Settings) -> QueueConfig:
    """The queue-layer slice of the settings."""
    return QueueConfig(
        keep_completed=Retention(
            count=settings.keep_completed_count, age_seconds=settings.keep_completed_seconds
        ),
        keep_failed=Retention(
            count=settings.keep_failed_count, age_seconds=settings.keep_failed_seconds
        ),
        max_log_lines=settings.max_log_lines,
        enqueue_max_memory_share=settings.enqueue_max_memory_share,
    )


def queue_keys(settings: Settings) -> QueueKeys:
    """The keys of the queue named in settings."""
    return QueueKeys(prefix=settings.key_prefix, queue=settings.queue_name)


def make_queue(settings: Settings, redis: Redis) -> JobQueue:
    """The queue named in settings, on `redis`."""
    return JobQueue(redis, queue_keys(settings), queue_config(settings))
