"""`GET /jobs`: filters, sort, cursor paging (also over 100,000 jobs) and 422s naming the field."""

from __future__ import annotations

import httpx
import pytest

from service.queue.models import JobSpec
from service.queue.queue import JobQueue
from service.queue.states import Priority


async def _all_pages(client: httpx.AsyncClient, params: dict[str, str]) -> list[dict]:
    items: list[dict] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/jobs", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


async def test_lists_newest_first_with_summary_fields(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    first = (await queue.enqueue(JobSpec(type="noop"))).job
    second = (await queue.enqueue(JobSpec(type="noop", delay_seconds=60))).job
    body = (await client.get("/jobs")).json()
    assert [item["id"] for item in body["items"]] == [second.id, first.id]
    delayed, pending = body["items"]
    assert delayed["status"] == "delayed" and delayed["runs_at"] is not None
    assert pending["runs_at"] is None and pending["wait_ms"] >= 0 and pending["run_ms"] is None
    oldest = (await client.get("/jobs", params={"sort": "created"})).json()["items"]
    assert [item["id"] for item in oldest] == [first.id, second.id]


async def test_filters_by_state_type_priority_and_time(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    low = (await queue.enqueue(JobSpec(type="noop", priority=Priority.LOW))).job
    high = await queue.enqueue(JobSpec(type="echo", priority=Priority.HIGH, data={"x": 1}))
    cancelled = await queue.cancel(high.job.id)
    assert [j["id"] for j in await _all_pages(client, {"state": "cancelled"})] == [cancelled.id]
    assert [j["id"] for j in await _all_pages(client, {"type": "noop"})] == [low.id]
    assert [j["id"] for j in await _all_pages(client, {"priority": "low"})] == [low.id]
    created_ms = int(low.created_at.timestamp() * 1000)
    later = await _all_pages(client, {"since": str(created_ms + 10**7)})
    assert later == []
    iso = low.created_at.isoformat()
    assert low.id in [j["id"] for j in await _all_pages(client, {"until": iso})]


async def test_q_finds_id_idempotency_key_and_text(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    keyed = (await queue.enqueue(JobSpec(type="echo", idempotency_key="order-77"))).job
    texty = (await queue.enqueue(JobSpec(type="echo", data={"note": "needle in hay"}))).job
    await queue.enqueue(JobSpec(type="echo", data={"note": "nothing"}))
    for q, expected in ((keyed.id, keyed.id), ("order-77", keyed.id), ("needle", texty.id)):
        found = await _all_pages(client, {"q": q})
        assert [j["id"] for j in found] == [expected], q


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("state", "sleeping"),
        ("priority", "urgent"),
        ("since", "yesterday"),
        ("until", "2026-01-01T00:00:00"),
        ("sort", "type"),
        ("limit", "0"),
        ("limit", "501"),
        ("cursor", "abc"),
    ],
)
async def test_bad_parameters_are_422_naming_the_field(
    client: httpx.AsyncClient, param: str, value: str
) -> None:
    response = await client.get("/jobs", params={param: value})
    assert response.status_code == 422
    assert param in response.text


@pytest.mark.slow
async def test_pages_100k_jobs_by_state_without_skips_or_repeats(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    ids: list[str] = []
    for _ in range(100):
        specs = [JobSpec(type="noop", delay_seconds=60 if i % 7 == 0 else 0) for i in range(1000)]
        results = await queue.enqueue_many(specs)
        ids += [r.job.id for r, s in zip(results, specs, strict=True) if s.delay_seconds]
    listed = await _all_pages(client, {"state": "delayed", "limit": "500"})
    listed_ids = [item["id"] for item in listed]
    assert len(listed_ids) == len(set(listed_ids))
    assert set(listed_ids) == set(ids)
    plain = await _all_pages(client, {"limit": "500", "sort": "created"})
    assert len(plain) == 100_000 and len({item["id"] for item in plain}) == 100_000
