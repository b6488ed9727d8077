"""Bulk cancel, retry and delete, by ids and by filter, with dry runs and skipped reasons."""

from __future__ import annotations

import httpx
import pytest

from service.queue.errors import JobNotFoundError
from service.queue.models import JobSpec
from service.queue.queue import JobQueue
from service.queue.states import JobState


async def test_cancel_by_ids_skips_unknown_and_finished(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    live = [r.job.id for r in await queue.enqueue_many([JobSpec(type="noop")] * 3)]
    done = (await queue.enqueue(JobSpec(type="noop"))).job.id
    await queue.cancel(done)
    body = {"ids": [*live, done, "no-such-job"]}
    response = await client.post("/jobs/bulk/cancel", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["matched"] == 5 and result["changed"] == 3
    assert {s["id"] for s in result["skipped"]} == {done, "no-such-job"}
    for job in await queue.get_many(live):
        assert job.state is JobState.CANCELLED


async def test_retry_by_filter_with_dry_run_first(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    ids = [r.job.id for r in await queue.enqueue_many([JobSpec(type="echo")] * 4)]
    other = (await queue.enqueue(JobSpec(type="noop"))).job.id
    for job_id in [*ids, other]:
        await queue.cancel(job_id)
    request = {"filter": {"type": "echo", "state": "cancelled"}}
    dry = (await client.post("/jobs/bulk/retry", json={**request, "dry_run": True})).json()
    assert dry == {"matched": 4, "changed": 0, "skipped": []}
    assert all(j.state is JobState.CANCELLED for j in await queue.get_many(ids))
    done = (await client.post("/jobs/bulk/retry", json=request)).json()
    assert done["matched"] == 4 and done["changed"] == 4
    assert all(j.state is JobState.PENDING for j in await queue.get_many(ids))
    assert (await queue.get(other)).state is JobState.CANCELLED


async def test_delete_removes_only_finished_jobs(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    finished = (await queue.enqueue(JobSpec(type="noop", idempotency_key="k-1"))).job.id
    await queue.cancel(finished)
    live = (await queue.enqueue(JobSpec(type="noop"))).job.id
    result = (await client.post("/jobs/bulk/delete", json={"ids": [finished, live]})).json()
    assert result["matched"] == 2 and result["changed"] == 1
    assert [s["id"] for s in result["skipped"]] == [live]
    assert "pending" in result["skipped"][0]["reason"]
    with pytest.raises(JobNotFoundError):
        await queue.get(finished)
    assert (await client.get("/jobs", params={"q": "k-1"})).json()["items"] == []
    assert (await queue.counts()).by_type["noop"][JobState.CANCELLED] == 0
    again = await queue.enqueue(JobSpec(type="noop", idempotency_key="k-1"))
    assert again.created  # the idempotency key went with the job


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "ids"),
        ({"ids": [], "dry_run": True}, "ids"),
        ({"ids": ["x"] * 1001}, "ids"),
        ({"ids": ["a b"]}, "ids"),
        ({"ids": ["a"], "filter": {"state": "done"}}, "state"),
        ({"filter": {"since": "soon"}}, "since"),
    ],
)
async def test_bad_bodies_are_422_naming_the_field(
    client: httpx.AsyncClient, body: dict, field: str
) -> None:
    response = await client.post("/jobs/bulk/cancel", json=body)
    assert response.status_code == 422, response.text
    assert field in response.text
