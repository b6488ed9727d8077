"""CLI test fixtures: a real API server for the client commands (helpers from tests/api)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from api_harness import api_server, delete_queue_sync, unique_queue


@pytest.fixture(scope="module")
def cli_queue(redis_url: str) -> Iterator[str]:
    """A queue for this module's server; deleted at the end."""
    name = unique_queue()
    yield name
    delete_queue_sync(redis_url, name)


@pytest.fixture(scope="module")
def server(redis_url: str, cli_queue: str) -> Iterator[str]:
    """A real `jobqueue api` process; yields its base URL."""
    with api_server(redis_url, cli_queue) as base:
        yield base
