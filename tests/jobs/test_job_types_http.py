"""Through the HTTP API: each built-in type's bad payload is a 422 naming the field, with nothing
enqueued; a good one is accepted with the type's defaults."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from service.api.app import create_app
from service.settings import Settings

API_KEY = "jobs-test-api-key-0123456789"


@pytest.fixture
async def client(redis_url, queue_name, queue) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app on this test's queue (`queue` removes its keys afterwards)."""
    settings = Settings(
        environment="test",
        redis_url=redis_url,
        queue_name=queue_name,
        key_prefix="jqtest",
        api_keys=API_KEY,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api.test", headers={"X-API-Key": API_KEY}
        ) as c:
            yield c


@pytest.mark.parametrize(
    ("job_type", "data", "field"),
    [
        ("data-processing", {"dataset": {"csv": "a\n1"}, "chunk_size": -1}, "data.chunk_size"),
        (
            "image-processing",
            {"uri": "file:///x.png", "output_format": "svg"},
            "data.output_format",
        ),
        ("email-sending", {"to": ["nobody"], "subject": "s", "text": "t"}, "data.to"),
        ("report-generation", {"source": "queue-stats", "format": "docx"}, "data.format"),
    ],
)
async def test_bad_payload_is_a_422_naming_the_field_and_nothing_is_enqueued(
    client, queue, job_type, data, field
):
    response = await client.post("/jobs/enqueue", json={"type": job_type, "data": data})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_job"
    assert field in [e["field"] for e in error["details"]["errors"]]
    assert sum((await queue.counts()).by_state.values()) == 0


async def test_good_payload_is_enqueued_with_the_type_defaults(client, queue):
    data = {"to": ["a@example.com"], "subject": "Hi {{ n }}", "text": "t", "variables": {"n": 1}}
    response = await client.post("/jobs/enqueue", json={"type": "email-sending", "data": data})
    assert response.status_code == 201, response.text
    job = await queue.get(response.json()["id"])
    assert (job.type, job.max_attempts, job.timeout_seconds) == ("email-sending", 5, 60)
