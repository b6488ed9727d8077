"""Fixtures for the flow-control tests: the app on the test queue, with its lifespan run."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from service.api.app import create_app
from service.queue.queue import JobQueue
from tests.api.api_harness import API_KEY, app_settings


@pytest.fixture
async def client(
    redis_url: str, queue_name: str, queue: JobQueue
) -> AsyncIterator[httpx.AsyncClient]:
    """A client with a valid key on an app serving the test queue."""
    application = create_app(app_settings(redis_url, queue_name))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api.test", headers={"X-API-Key": API_KEY}
        ) as c:
            yield c
