"""Live progress over Server-Sent Events, with a real taskiq worker running the job."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from api_harness import parse_sse, worker

pytestmark = pytest.mark.slow


async def test_events_stream_status_and_progress_until_the_job_ends(
    client: httpx.AsyncClient, redis_url: str, queue_name: str
) -> None:
    job = (
        await client.post(
            "/jobs/enqueue",
            json={"type": "noop", "data": {"sleep_seconds": 1, "progress_steps": 4}},
        )
    ).json()
    with worker(redis_url, queue_name):
        response = await client.get(f"/jobs/{job['id']}/events", timeout=90)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    names = [name for name, _ in events]
    assert names[0] == "status" and events[0][1]["status"] == "pending"
    assert names[-1] == "end"
    progress = [data["progress"] for name, data in events if name == "progress"]
    assert progress == [25, 50, 75, 100]
    statuses = [data["status"] for name, data in events if name == "status"]
    assert "processing" in statuses
    final = events[-1][1]
    assert final["status"] == "completed"
    assert final["result"] == {"attempt": 1, "slept_seconds": 1.0}
    assert final["progress"] == 100


async def test_events_of_a_finished_job_send_one_end_event(client: httpx.AsyncClient) -> None:
    job = (await client.post("/jobs/enqueue", json={"type": "noop"})).json()
    await client.delete(f"/jobs/{job['id']}")
    response = await client.get(f"/jobs/{job['id']}/events")
    events = parse_sse(response.text)
    assert [name for name, _ in events] == ["end"]
    assert events[0][1]["status"] == "cancelled"


async def test_cancelling_a_watched_job_ends_its_stream(client: httpx.AsyncClient) -> None:
    # The stream runs in the app while another request cancels the job.
    job = (await client.post("/jobs/enqueue", json={"type": "noop"})).json()

    async def cancel_soon() -> None:
        await asyncio.sleep(0.5)
        await client.delete(f"/jobs/{job['id']}")

    canceller = asyncio.create_task(cancel_soon())
    response = await client.get(f"/jobs/{job['id']}/events", timeout=30)
    await canceller
    events = parse_sse(response.text)
    assert [name for name, _ in events] == ["status", "end"]
    assert events[-1][1]["status"] == "cancelled"
