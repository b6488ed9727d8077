"""Which failures a pooled connection resends: connection errors, never timeouts."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.queue.cluster import REDIRECT_RETRIES, QueueSlotMovedError
from service.queue.connection import RECONNECT_RETRIES, connect
from service.settings import Settings


def _retry_of(settings: Settings) -> tuple[int, tuple[type[Exception], ...]]:
    client = connect(settings)
    connection = client.connection_pool.make_connection()  # not connected: no server needed
    retry = connection.retry
    return retry.get_retries(), tuple(retry._supported_errors)


def test_a_plain_connection_resends_on_connection_errors_only() -> None:
    retries, errors = _retry_of(Settings(environment="test", redis_url="redis://127.0.0.1:1/0"))

    assert retries == RECONNECT_RETRIES
    assert RedisConnectionError in errors
    # A timed-out command may still be running on the server, and a blocking BZPOPMIN that
    # outlived its socket timeout must not wait again.
    assert not any(issubclass(RedisTimeoutError, error) for error in errors)


def test_a_cluster_connection_resends_dead_connections_as_well_as_redirects() -> None:
    settings = Settings(environment="test", redis_url="redis://127.0.0.1:1/0", redis_cluster=True)
    retries, errors = _retry_of(settings)

    assert retries == REDIRECT_RETRIES
    assert QueueSlotMovedError in errors and RedisConnectionError in errors
    assert not any(issubclass(RedisTimeoutError, error) for error in errors)
