"""Fault tests: each runs against a server of its own (servers.py), never the shared one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.api_harness import unique_queue
from tests.faults.servers import OwnServer, own_server

# 20 MB, as in the run; `noeviction` is what the cloud stack should use (a queue must
# never have Redis evict its jobs).
FULL_SERVER_CONFIG = {"maxmemory": "20mb", "maxmemory-policy": "noeviction"}


@pytest.fixture(scope="module")
def small_server() -> Iterator[OwnServer]:
    """A server with a 20 MB maxmemory and noeviction, shared by one module's tests."""
    with own_server(**FULL_SERVER_CONFIG) as server:
        yield server


@pytest.fixture
def fault_queue() -> str:
    """A queue name no other test uses."""
    return unique_queue()
