"""Building Redis clients and queues from settings."""

from __future__ import annotations

from redis.asyncio import Redis

from service.queue.keys import QueueKeys
from service.queue.models import Retention
from service.queue.queue import JobQueue, QueueConfig
from service.settings import Settings

# Client-side timeouts: a command that takes longer than this against a healthy server means the
# server is gone, and callers should get a clear "unavailable" rather than hang. Blocking commands
# (BZPOPMIN) pass their own, longer timeout on top of this.
SOCKET_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5.0


def connect(settings: Settings) -> Redis:
    """A pooled async client for the configured server (TLS with `rediss://` / REDIS_TLS)."""
    return Redis.from_url(
        settings.resolved_redis_url(),
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_SECONDS + settings.idle_block_seconds,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_keepalive=True,
        health_check_interval=30,
    )


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


def make_queue(settings: Settings, redis: Redis) -> JobQueue:
    """The queue named in settings, on `redis`."""
    keys = QueueKeys(prefix=settings.key_prefix, queue=settings.queue_name)
    return JobQueue(redis, keys, queue_config(settings))
