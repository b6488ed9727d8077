"""Flow-control endpoints through the HTTP API (ASGI transport, real Redis): pause and resume,
limits, promote and PATCH priority, and their 4xx answers."""

from __future__ import annotations

import httpx

from service.queue.consumer import Consumer
from service.queue.models import JobSpec
from service.queue.queue import JobQueue


async def enqueue(client: httpx.AsyncClient, **body: object) -> str:
    response = await client.post("/jobs/enqueue", json={"type": "noop", **body})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_paused_queue_starts_nothing_until_resumed(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    assert (await client.post("/queue/pause")).json() == {"paused": True}
    job_id = await enqueue(client)
    assert (await client.get("/jobs/stats")).json()["paused"] is True
    taken, _ = await Consumer(queue, "w", 30).dequeue(10)
    assert taken == []
    assert (await client.post("/queue/resume")).json() == {"paused": False}
    taken, _ = await Consumer(queue, "w", 30).dequeue(10)
    assert [d.job_id for d in taken] == [job_id]


async def test_paused_type_is_held_while_others_run(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    response = await client.post("/jobs/types/noop/pause")
    assert response.status_code == 200, response.text
    assert response.json()["paused"] is True
    held = await enqueue(client)
    other = (await queue.enqueue(JobSpec(type="other"))).job.id
    stats = (await client.get("/jobs/stats")).json()
    assert stats["paused_types"] == ["noop"]
    types = {t["name"]: t for t in (await client.get("/jobs/types")).json()["items"]}
    assert types["noop"]["paused"] is True
    assert types["data-processing"]["paused"] is False
    taken, _ = await Consumer(queue, "w", 30).dequeue(10)
    assert [d.job_id for d in taken] == [other]
    await client.post("/jobs/types/noop/resume")
    taken, _ = await Consumer(queue, "w", 30).dequeue(10)
    assert [d.job_id for d in taken] == [held]


async def test_jobs_of_a_paused_type_still_count_and_list_as_pending(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    # Once they were missing: counts and lists read only the shared `pending` set, not the
    # paused type's own lane.
    await client.post("/jobs/types/noop/pause")
    first = await enqueue(client, priority="high")
    shared = (await queue.enqueue(JobSpec(type="other"))).job.id
    last = await enqueue(client)
    stats = (await client.get("/jobs/stats")).json()
    assert stats["counts"]["pending"] == 3
    assert stats["pending_by_priority"]["high"] == 1
    assert stats["pending_by_priority"]["normal"] == 2
    listed = (await client.get("/jobs/pending", params={"limit": 2})).json()
    assert [job["id"] for job in listed["items"]] == [first, shared]  # run order across sets
    rest = await client.get("/jobs/pending", params={"cursor": listed["next_cursor"]})
    assert [job["id"] for job in rest.json()["items"]] == [last]
    await client.post("/jobs/types/noop/resume")


async def test_limits_are_set_shown_and_removed(client: httpx.AsyncClient) -> None:
    body = {"rate": {"limit": 10, "per_seconds": 1}, "concurrency": 5}
    response = await client.put("/jobs/types/noop/limits", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["limits"] == body
    types = {t["name"]: t for t in (await client.get("/jobs/types")).json()["items"]}
    assert types["noop"]["limits"] == body
    response = await client.put("/jobs/types/noop/limits", json={"rate": None})
    assert response.json()["limits"] == {"rate": None, "concurrency": 5}


async def test_bad_limits_are_422_naming_the_field(client: httpx.AsyncClient) -> None:
    for body, field in [
        ({"concurrency": 0}, "concurrency"),
        ({"rate": {"limit": 0, "per_seconds": 1}}, "limit"),
        ({"rate": {"limit": 1, "per_seconds": 0}}, "per_seconds"),
        ({"burst": 3}, "burst"),
    ]:
        response = await client.put("/jobs/types/noop/limits", json=body)
        assert response.status_code == 422, (body, response.text)
        assert field in response.text


async def test_unknown_type_or_job_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.post("/jobs/types/nosuch/pause")).status_code == 404
    assert (await client.post("/jobs/types/nosuch/resume")).status_code == 404
    assert (await client.put("/jobs/types/nosuch/limits", json={})).status_code == 404
    assert (await client.post("/jobs/nosuch/promote")).status_code == 404
    assert (await client.patch("/jobs/nosuch", json={"priority": "high"})).status_code == 404


async def test_promote_runs_a_delayed_job_now_and_409s_otherwise(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    delayed = await enqueue(client, delay_seconds=3600)
    response = await client.post(f"/jobs/{delayed}/promote")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "pending"
    assert (await client.post(f"/jobs/{delayed}/promote")).status_code == 409
    taken, _ = await Consumer(queue, "w", 30).dequeue(10)
    assert [d.job_id for d in taken] == [delayed]


async def test_patch_priority_moves_a_pending_job_keeping_fifo(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    first_low = await enqueue(client, priority="low")
    normal = await enqueue(client)
    second_low = await enqueue(client, priority="low")
    high = await enqueue(client, priority="high")
    # Both lows move to high: they keep their enqueue order among the high jobs.
    for job_id in (second_low, first_low):
        response = await client.patch(f"/jobs/{job_id}", json={"priority": "high"})
        assert response.status_code == 200, response.text
        assert response.json()["priority"] == "high"
    taken, _ = await Consumer(queue, "w", 30).dequeue(10)
    assert [d.job_id for d in taken] == [first_low, second_low, high, normal]
    bad = await client.patch(f"/jobs/{normal}", json={"priority": "urgent"})
    assert bad.status_code == 422 and "priority" in bad.text
    assert (await client.patch(f"/jobs/{normal}", json={"priority": "low"})).status_code == 409
