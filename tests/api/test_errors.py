"""Errors a client can cause or meet: 413 over the body limit (declared or streamed), 503 with
Retry-After when Redis is down, and never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from api_harness import API_KEY, app_settings, free_port

from service.api.app import create_app
from service.queue.queue import JobQueue
from service.queue.states import JobState


@pytest.fixture
async def small_limit_client(
    redis_url: str, queue_name: str, queue: JobQueue
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(app_settings(redis_url, queue_name, max_body_bytes=2048))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api.test",
            headers={"X-API-Key": API_KEY},
        ) as client,
    ):
        yield client


async def test_declared_body_over_the_limit_is_413(
    small_limit_client: httpx.AsyncClient, queue: JobQueue
) -> None:
    body = {"type": "noop", "idempotency_key": "x" * 256, "data": {"pad": "y" * 3000}}
    response = await small_limit_client.post("/jobs/enqueue", json=body)
    assert response.status_code == 413
    assert response.json()["error"] == {
        "code": "payload_too_large",
        "message": "the request body is over the 2048-byte limit",
        "details": {"max_bytes": 2048},
    }
    assert (await queue.counts()).by_state[JobState.PENDING] == 0


async def test_streamed_body_over_the_limit_is_413_without_content_length(
    small_limit_client: httpx.AsyncClient,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"type": "noop", "data": {"pad": "'
        for _ in range(10):
            yield b"z" * 500
        yield b'"}}'

    response = await small_limit_client.post(
        "/jobs/enqueue", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413


async def test_body_under_the_limit_passes(small_limit_client: httpx.AsyncClient) -> None:
    response = await small_limit_client.post("/jobs/enqueue", json={"type": "noop"})
    assert response.status_code == 201


@pytest.fixture
async def down_client(queue_name: str) -> AsyncIterator[httpx.AsyncClient]:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(app_settings(closed, queue_name))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api.test",
            headers={"X-API-Key": API_KEY},
        ) as client,
    ):
        yield client


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/jobs/enqueue", {"type": "noop"}),
        ("POST", "/noop/enqueue", {}),
        ("POST", "/jobs/enqueue/bulk", {"jobs": [{"type": "noop"}]}),
        ("GET", "/jobs/abc/status", None),
        ("GET", "/jobs/abc/events", None),
        ("DELETE", "/jobs/abc", None),
        ("GET", "/jobs/stats", None),
        ("GET", "/jobs/pending", None),
        ("GET", "/jobs/workers", None),
        ("GET", "/readyz", None),
        ("GET", "/metrics", None),
    ],
)
async def test_redis_down_is_503_with_retry_after(
    down_client: httpx.AsyncClient, method: str, path: str, body: object
) -> None:
    response = await down_client.request(method, path, json=body)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"]["code"] == "queue_unavailable"


async def test_health_with_redis_down_is_unhealthy_not_an_error(
    down_client: httpx.AsyncClient,
) -> None:
    response = await down_client.get("/jobs/health")
    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy"


async def test_liveness_holds_while_redis_is_down(down_client: httpx.AsyncClient) -> None:
    assert (await down_client.get("/healthz")).status_code == 200


async def test_unknown_routes_and_methods_use_the_error_body(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = await client.put("/jobs/stats")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"
