"""Building Redis clients and queues from settings."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

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
        "health_check_interval": 30,
    }
    url = settings.resolved_redis_url()
    if settings.redis_cluster:
        return Redis.from_pool(queue_slot_pool(url, queue_keys(settings).cluster_slot, **options))
    return Redis.from_pool(packed_pool(url, **options))


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
    )


def queue_keys(settings: Settings) -> QueueKeys:
    """The keys of the queue named in settings."""
    return QueueKeys(prefix=settings.key_prefix, queue=settings.queue_name)


def make_queue(settings: Settings, redis: Redis) -> JobQueue:
    """The queue named in settings, on `redis`."""
    return JobQueue(redis, queue_keys(settings), queue_config(settings))
