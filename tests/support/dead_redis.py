"""A Redis client of a port nothing listens on."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def dead_redis() -> Redis:
    """A client whose every command fails at once with ConnectionError. No retries: the tests
    using it check what their code does with the failure, and redis-py's default backoff would
    only add seconds of waiting to each of them."""
    return Redis(
        host="127.0.0.1",
        port=1,
        decode_responses=True,
        socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 0),
    )
