"""hiredis packing: the bytes sent are exactly redis-py's own, and bad input fails the same."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from service.queue.connection import connect
from service.queue.wire import PackedConnection, PackedSSLConnection
from service.settings import Settings

COMMANDS = [
    ("EVALSHA", "a" * 40, 3, "jq:{q}:pending", b"\x00\xff raw", 1.5, 10**20, -7, "é ✓", ""),
    ("CLUSTER SLOTS",),
    (b"CONFIG GET", "maxmemory"),
    ("SET", "k", "v" * 100_000),  # past redis-py's chunking cutoff
    ("ZADD", "z", 0.1, "m", 1e-300, "n", float("inf"), "o"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_commands_pack_to_the_bytes_redis_py_would_send(command: tuple[object, ...]) -> None:
    ours = b"".join(PackedConnection().pack_command(*command))
    theirs = b"".join(Connection().pack_command(*command))
    assert ours == theirs


def test_pipelines_pack_to_the_bytes_redis_py_would_send() -> None:
    ours = b"".join(PackedConnection().pack_commands(COMMANDS))
    assert ours == b"".join(Connection().pack_commands(COMMANDS))


@pytest.mark.parametrize("bad", [None, True, bytearray(b"x"), object()])
def test_an_argument_redis_cannot_take_is_a_data_error(bad: object) -> None:
    with pytest.raises(DataError):
        PackedConnection().pack_command("SET", "k", bad)  # type: ignore[arg-type]


def test_text_that_is_not_valid_utf8_is_refused_before_sending() -> None:
    with pytest.raises(UnicodeEncodeError):
        PackedConnection().pack_command("SET", "k", "lone \ud800")


@pytest.mark.parametrize(
    ("url", "expected"),
    [("redis://127.0.0.1:6379/0", PackedConnection), ("rediss://h:6380/0", PackedSSLConnection)],
)
async def test_every_client_of_the_service_packs_with_hiredis(url: str, expected: type) -> None:
    client = connect(Settings(redis_url=url))
    assert client.connection_pool.connection_class is expected
    await client.aclose()


async def test_a_packed_connection_talks_to_a_real_server(redis_url: str) -> None:
    client = connect(Settings(redis_url=redis_url))
    try:
        await client.set("jqtest:wire", "é" * 70_000)
        assert await client.get("jqtest:wire") == "é" * 70_000
        assert await client.execute_command("CONFIG GET", "maxmemory")
    finally:
        await client.delete("jqtest:wire")
        await client.aclose()
