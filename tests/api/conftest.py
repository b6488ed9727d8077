"""Fixtures for the API tests: the app on the test queue (lifespan run), clients with and
without a key, and a real uvicorn server for the tests that need real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from api_harness import API_KEY, api_server, app_settings, delete_queue_sync, unique_queue
from fastapi import FastAPI

from service.api.app import create_app
from service.queue.queue import JobQueue
from service.settings import Settings


@pytest.fixture
def settings(redis_url: str, queue_name: str, queue: JobQueue) -> Settings:
    """Settings for the test queue; depending on `queue` deletes its keys afterwards."""
    return app_settings(redis_url, queue_name)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with its lifespan running (httpx's ASGI transport does not run lifespans)."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client sending a valid key."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://api.test", headers={"X-API-Key": API_KEY}
    ) as c:
        yield c


@pytest.fixture
async def anon(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client sending no key."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as c:
        yield c


@pytest.fixture(scope="session")
def live_queue(redis_url: str) -> Iterator[str]:
    """A queue for the session's real server; deleted at the end."""
    name = unique_queue()
    yield name
    delete_queue_sync(redis_url, name)


@pytest.fixture(scope="session")
def live_api(redis_url: str, live_queue: str) -> Iterator[str]:
    """A real `jobqueue api` (uvicorn) process for the session; yields its base URL."""
    with api_server(redis_url, live_queue) as base:
        yield base
