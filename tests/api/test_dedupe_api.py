"""The `dedupe` enqueue option over HTTP: 201 first, 200 `deduplicated` after, bulk, and 422s
naming the field."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from service.queue.queue import JobQueue
from service.queue.states import JobState

THROTTLE = {"key": "sync-7", "mode": "throttle", "ttl_seconds": 60}


async def test_first_enqueue_is_201_and_a_repeat_is_200_deduplicated(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    first = await client.post("/jobs/enqueue", json={"type": "noop", "dedupe": THROTTLE})
    assert first.status_code == 201
    assert (first.json()["created"], first.json()["deduplicated"]) == (True, False)
    again = await client.post(
        "/noop/enqueue", json={"data": {"progress_steps": 1}, "dedupe": THROTTLE}
    )
    assert again.status_code == 200
    body = again.json()
    assert (body["id"], body["created"], body["deduplicated"]) == (first.json()["id"], False, True)
    assert (await queue.counts()).by_state[JobState.PENDING] == 1


async def test_a_seen_idempotency_key_is_200_but_not_deduplicated(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/jobs/enqueue", json={"type": "noop", "idempotency_key": "k-1"})
    again = await client.post("/jobs/enqueue", json={"type": "noop", "idempotency_key": "k-1"})
    assert again.status_code == 200
    assert again.json()["deduplicated"] is False


async def test_debounce_over_http_keeps_one_job_with_the_last_data(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    dedupe = {"key": "search-index", "mode": "debounce", "ttl_seconds": 30}
    ids = set()
    for steps in (1, 2, 3):
        response = await client.post(
            "/jobs/enqueue",
            json={
                "type": "noop",
                "data": {"progress_steps": steps},
                "delay_seconds": 5,
                "dedupe": dedupe,
            },
        )
        ids.add(response.json()["id"])
    assert len(ids) == 1
    job = await queue.get(ids.pop())
    assert (job.state, job.data["progress_steps"]) == (JobState.DELAYED, 3)


async def test_bulk_enqueue_deduplicates_and_counts_only_new_jobs(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    until_done = {"key": "export", "mode": "until_done"}
    jobs = [{"type": "noop", "dedupe": until_done} for _ in range(3)] + [{"type": "noop"}]
    response = await client.post("/jobs/enqueue/bulk", json={"jobs": jobs})
    assert response.status_code == 201
    body = response.json()
    assert body["created"] == 2
    flags = [(item["created"], item["deduplicated"]) for item in body["items"]]
    assert flags == [(True, False), (False, True), (False, True), (True, False)]
    assert len({item["id"] for item in body["items"][:3]}) == 1
    assert (await queue.counts()).by_state[JobState.PENDING] == 2


@pytest.mark.parametrize(
    ("dedupe", "field"),
    [
        ({"key": "k", "mode": "throttle", "ttl_seconds": 0}, "dedupe.ttl_seconds"),
        ({"key": "k", "mode": "debounce", "ttl_seconds": -5}, "dedupe.ttl_seconds"),
        ({"key": "k", "mode": "throttle"}, "dedupe.ttl_seconds"),
        ({"key": "", "mode": "throttle", "ttl_seconds": 5}, "dedupe.key"),
        ({"key": "k", "mode": "sometimes", "ttl_seconds": 5}, "dedupe.mode"),
        ({"key": "k", "mode": "until_done", "ttl_seconds": "5"}, "dedupe.ttl_seconds"),
        ({"key": "k", "mode": "until_done", "window": 5}, "dedupe.window"),
    ],
)
async def test_bad_dedupe_is_422_naming_the_field(
    client: httpx.AsyncClient, queue: JobQueue, dedupe: dict[str, Any], field: str
) -> None:
    response = await client.post("/jobs/enqueue", json={"type": "noop", "dedupe": dedupe})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["error"]["details"]["errors"]] == [field]
    bulk = await client.post(
        "/jobs/enqueue/bulk", json={"jobs": [{"type": "noop"}, {"type": "noop", "dedupe": dedupe}]}
    )
    assert bulk.status_code == 422
    assert [e["field"] for e in bulk.json()["error"]["details"]["errors"]] == [f"jobs.1.{field}"]
    assert (await queue.counts()).by_state[JobState.PENDING] == 0
