"""POST /flows and the flow fields of GET /jobs/{id}, through the app on a real Redis."""

from __future__ import annotations

import json
from typing import Any

import httpx
from api_harness import API_KEY, app_settings
from redis.asyncio import Redis

from service.api.app import create_app
from service.queue.consumer import Consumer, Outcome
from service.queue.queue import JobQueue
from tests.support.state import assert_consistent


def leaf(**fields: Any) -> dict[str, Any]:
    return {"type": "noop", **fields}


async def test_a_posted_flow_answers_201_with_every_id_and_runs_children_first(
    client: httpx.AsyncClient, queue: JobQueue, redis: Redis
) -> None:
    body = {
        "type": "noop",
        "options": {"priority": "high"},
        "children": [leaf(data={"sleep_seconds": 0}), leaf(options={"attempts": 1})],
    }
    response = await client.post("/flows", json=body)
    assert response.status_code == 201, response.text
    flow = response.json()
    root = flow["root"]
    kids = [child["id"] for child in root["children"]]
    assert flow["ids"] == [root["id"], *kids]
    assert root["status"] == "waiting-children"
    assert [c["status"] for c in root["children"]] == ["pending", "pending"]

    detail = (await client.get(f"/jobs/{root['id']}")).json()
    assert detail["status"] == "waiting-children"
    assert detail["priority"] == "high"
    assert (detail["waiting_for"], detail["on_child_failure"]) == (2, "fail")
    assert detail["children"] == [{"id": k, "status": "pending"} for k in kids]
    assert (await client.get(f"/jobs/{kids[1]}")).json()["parent_id"] == root["id"]
    assert (await client.get(f"/jobs/{kids[1]}")).json()["max_attempts"] == 1

    consumer = Consumer(queue, "w1", 30)
    taken, _ = await consumer.dequeue(10)
    await consumer.finish_many([Outcome(d.job_id, True, json.dumps({"n": 1})) for d in taken])
    detail = (await client.get(f"/jobs/{root['id']}")).json()
    assert (detail["status"], detail["waiting_for"]) == ("pending", 0)
    assert detail["children_results"] == {k: {"n": 1} for k in kids}
    assert detail["children"] == [{"id": k, "status": "completed"} for k in kids]
    stats = (await client.get("/jobs/stats")).json()
    assert stats["counts"]["waiting-children"] == 0
    await assert_consistent(redis, queue.keys)


async def test_an_unknown_type_deep_in_the_tree_is_a_422_naming_its_path(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    body = leaf(children=[leaf(), leaf(), leaf(), leaf(children=[{"type": "nope"}])])
    response = await client.post("/flows", json=body)
    assert response.status_code == 422, response.text
    errors = response.json()["error"]["details"]["errors"]
    assert [e["field"] for e in errors] == ["children[3].children[0].type"]
    assert "unknown job type 'nope'" in errors[0]["message"]
    assert (await queue.counts()).by_state["pending"] == 0


async def test_bad_data_and_refused_options_name_their_paths(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    body = leaf(
        children=[
            leaf(data={"sleep_seconds": -1}),
            leaf(options={"idempotency_key": "k"}),
        ]
    )
    response = await client.post("/flows", json=body)
    assert response.status_code == 422, response.text
    fields = sorted(e["field"] for e in response.json()["error"]["details"]["errors"])
    assert fields == ["children[0].data.sleep_seconds", "children[1].options.idempotency_key"]
    assert sum((await queue.counts()).by_state.values()) == 0


async def test_a_tree_deeper_than_10_levels_is_a_422(client: httpx.AsyncClient) -> None:
    body: dict[str, Any] = leaf()
    for _ in range(10):
        body = leaf(children=[body])
    response = await client.post("/flows", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert "deeper than 10 levels" in error["message"]
    assert error["details"]["errors"][0]["field"] == ".".join(["children[0]"] * 10)


async def test_10000_children_are_taken_in_one_request_and_10001_refused(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    response = await client.post("/flows", json=leaf(children=[leaf()] * 10_000))
    assert response.status_code == 201, response.text[:300]
    assert len(response.json()["ids"]) == 10_001
    refused = await client.post("/flows", json=leaf(children=[leaf()] * 10_001))
    assert refused.status_code == 422, refused.text[:300]
    assert "10000" in refused.text or "10,000" in refused.text


async def test_cancelling_a_parent_over_http_cancels_its_children(
    client: httpx.AsyncClient,
) -> None:
    flow = (await client.post("/flows", json=leaf(children=[leaf(), leaf()]))).json()
    assert (await client.delete(f"/jobs/{flow['root']['id']}")).status_code == 200
    for job_id in flow["ids"]:
        assert (await client.get(f"/jobs/{job_id}")).json()["status"] == "cancelled"


async def test_a_job_outside_flows_shows_no_flow_fields(client: httpx.AsyncClient) -> None:
    job = (await client.post("/jobs/enqueue", json={"type": "noop"})).json()
    detail = (await client.get(f"/jobs/{job['id']}")).json()
    assert detail["parent_id"] is None and detail["children"] is None
    assert detail["waiting_for"] is None


async def test_post_flows_has_its_own_body_limit(
    redis_url: str, queue_name: str, queue: JobQueue
) -> None:
    settings = app_settings(redis_url, queue_name, max_body_bytes=2048, max_flow_body_bytes=8192)
    app = create_app(settings)
    flow = json.dumps(leaf(children=[leaf()] * 100))  # about 1.7 kB, padded to 4 kB
    padded = flow + " " * (4096 - len(flow))
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api.test", headers=headers
        ) as client,
    ):
        assert (await client.post("/flows", content=padded)).status_code == 201
        job = json.dumps({"type": "noop"}) + " " * 4096
        assert (await client.post("/jobs/enqueue", content=job)).status_code == 413
        too_big = await client.post("/flows", content=flow + " " * 8192)
        assert too_big.status_code == 413
        assert too_big.json()["error"]["details"] == {"max_bytes": 8192}


async def test_waiting_parents_are_listed_and_counted(client: httpx.AsyncClient) -> None:
    flow = (await client.post("/flows", json=leaf(children=[leaf()]))).json()
    listed = (await client.get("/jobs/waiting-children")).json()
    assert [job["id"] for job in listed["items"]] == [flow["root"]["id"]]
    stats = (await client.get("/jobs/stats")).json()
    assert stats["counts"]["waiting-children"] == 1
    assert stats["by_type"]["noop"]["waiting-children"] == 1
    by_status = (await client.get("/jobs/noop/jobs", params={"status": "waiting-children"})).json()
    assert [job["id"] for job in by_status["items"]] == [flow["root"]["id"]]


async def test_flow_jobs_take_a_group_and_a_bad_group_is_a_422_naming_its_path(
    client: httpx.AsyncClient, queue: JobQueue, redis: Redis
) -> None:
    body = {
        "type": "noop",
        "options": {"group": "tenant-p"},
        "children": [leaf(options={"group": "tenant-a"}), leaf(options={"group": "tenant-b"})],
    }
    response = await client.post("/flows", json=body)
    assert response.status_code == 201, response.text
    root = response.json()["root"]
    kids = [child["id"] for child in root["children"]]
    assert (await client.get(f"/jobs/{root['id']}")).json()["group"] == "tenant-p"
    assert [(await client.get(f"/jobs/{k}")).json()["group"] for k in kids] == [
        "tenant-a",
        "tenant-b",
    ]
    groups = {g["group"]: g for g in (await client.get("/groups")).json()["items"]}
    # The waiting parent is pending in no group until its children are done.
    assert {name: g["pending"] for name, g in groups.items()} == {"tenant-a": 1, "tenant-b": 1}
    await assert_consistent(redis, queue.keys)

    bad = {"type": "noop", "children": [leaf(options={"group": "tenant\u0007"})]}
    refused = await client.post("/flows", json=bad)
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["error"]["details"]["errors"]
    assert error["field"].startswith("children.0.options.group"), error
