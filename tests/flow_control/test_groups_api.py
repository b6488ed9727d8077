"""Fair-share group endpoints through the HTTP API (ASGI transport, real Redis): the `group`
option on enqueue and bulk, `GET /groups`, pause and resume, limits, and 422 for bad names."""

from __future__ import annotations

import urllib.parse

import httpx
import pytest

from service.queue.consumer import Consumer
from service.queue.queue import JobQueue


async def enqueue(client: httpx.AsyncClient, **body: object) -> str:
    response = await client.post("/jobs/enqueue", json={"type": "noop", **body})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_enqueued_group_shows_in_the_job_and_in_get_groups(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    job_id = await enqueue(client, group="tenant-42")
    reply = await client.post(
        "/jobs/enqueue/bulk", json={"jobs": [{"type": "noop", "group": "tenant-7"}] * 3}
    )
    assert reply.status_code == 201, reply.text
    detail = (await client.get(f"/jobs/{job_id}")).json()
    assert detail["group"] == "tenant-42"
    listed = (await client.get("/jobs/pending")).json()
    assert {job["group"] for job in listed["items"]} == {"tenant-42", "tenant-7"}
    searched = (await client.get("/jobs", params={"state": "pending"})).json()
    assert {job["group"] for job in searched["items"]} == {"tenant-42", "tenant-7"}
    page = (await client.get("/groups")).json()
    assert page["total"] == 2 and page["next_cursor"] is None
    assert [(g["group"], g["pending"], g["running"]) for g in page["items"]] == [
        ("tenant-7", 3, 0),
        ("tenant-42", 1, 0),
    ]
    await Consumer(queue, "w", 30).dequeue(1)
    first = (await client.get("/groups", params={"limit": 1})).json()
    assert first["next_cursor"] == "1" and len(first["items"]) == 1
    rest = (await client.get("/groups", params={"limit": 1, "cursor": "1"})).json()
    assert rest["next_cursor"] is None
    by_name = {g["group"]: g for g in first["items"] + rest["items"]}
    assert by_name["tenant-42"]["running"] + by_name["tenant-7"]["running"] == 1


async def test_paused_group_is_held_while_others_run(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    reply = await client.post("/groups/tenant-1/pause")
    assert reply.status_code == 200, reply.text
    assert reply.json()["paused"] is True
    held = await enqueue(client, group="tenant-1")
    other = await enqueue(client, group="tenant-2")
    taken, _ = await Consumer(queue, "w", 30).dequeue(10)
    assert [d.job_id for d in taken] == [other]
    resumed = (await client.post("/groups/tenant-1/resume")).json()
    assert (resumed["paused"], resumed["pending"]) == (False, 1)
    taken, _ = await Consumer(queue, "w", 30).dequeue(10)
    assert [d.job_id for d in taken] == [held]


async def test_group_limits_are_set_shown_and_removed(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    body = {"concurrency": 1, "rate": {"limit": 5, "per_seconds": 2}}
    reply = await client.put("/groups/tenant-1/limits", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["limits"] == {"concurrency": 1, "rate": {"limit": 5, "per_seconds": 2}}
    await enqueue(client, group="tenant-1")
    await enqueue(client, group="tenant-1")
    taken, _ = await Consumer(queue, "w", 30).dequeue(10)
    assert len(taken) == 1  # concurrency 1
    cleared = await client.put("/groups/tenant-1/limits", json={"concurrency": None})
    assert cleared.json()["limits"] == {"concurrency": None, "rate": {"limit": 5, "per_seconds": 2}}
    taken, _ = await Consumer(queue, "w", 30).dequeue(10)
    assert len(taken) == 1
    listed = (await client.get("/groups")).json()["items"]
    assert listed[0]["running"] == 2


@pytest.mark.parametrize(
    ("name", "fix"),
    [("x" * 129, "at most 128"), ("é" * 65, "130 bytes"), ("a\x01b", "control character")],
)
async def test_bad_group_names_get_422_saying_what_to_fix(
    client: httpx.AsyncClient, name: str, fix: str
) -> None:
    reply = await client.post("/jobs/enqueue", json={"type": "noop", "group": name})
    assert reply.status_code == 422 and fix in reply.text, reply.text
    path = urllib.parse.quote(name, safe="")
    for method, url in [
        ("POST", f"/groups/{path}/pause"),
        ("PUT", f"/groups/{path}/limits"),
        ("GET", f"/groups/{path}"),
    ]:
        body = {"concurrency": 2} if method == "PUT" else None
        answer = await client.request(method, url, json=body)
        assert answer.status_code == 422 and fix in answer.text, (url, answer.text)


async def test_bad_limits_and_cursors_get_422(client: httpx.AsyncClient) -> None:
    reply = await client.put("/groups/tenant-1/limits", json={"concurrency": 0})
    assert reply.status_code == 422
    assert (await client.get("/groups", params={"cursor": "abc"})).status_code == 422


async def test_a_schedule_refuses_a_group_it_would_drop(client: httpx.AsyncClient) -> None:
    body = {"type": "noop", "every_seconds": 60, "options": {"group": "tenant-1"}}
    reply = await client.put("/schedules/nightly", json=body)
    assert reply.status_code == 422 and "not supported on schedules" in reply.text, reply.text
