"""Job management through the HTTP API (ASGI transport, real Redis): enqueue, status,
progress, detail, cancel, retry, bulk, job types."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest

from service.api.schemas import non_unicode_fields
from service.queue.queue import JobQueue
from service.queue.states import JobState


async def enqueue(client: httpx.AsyncClient, **body: object) -> dict[str, object]:
    response = await client.post("/jobs/enqueue", json={"type": "noop", **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


def is_utc_iso(value: object) -> bool:
    assert isinstance(value, str)
    return datetime.fromisoformat(value).utcoffset() is not None and value.endswith(("Z", "+00:00"))


async def test_enqueue_answers_201_with_the_job_and_stores_it(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    job = await enqueue(client, data={"sleep_seconds": 1}, priority="high", attempts=5)
    assert job["status"] == "pending"
    assert job["priority"] == "high"
    assert job["max_attempts"] == 5
    assert job["created"] is True
    stored = await queue.get(str(job["id"]))
    assert stored.state is JobState.PENDING
    assert stored.data == {"sleep_seconds": 1.0, "fail_first_attempts": 0, "progress_steps": 0}


async def test_only_type_is_required_and_type_defaults_apply(client: httpx.AsyncClient) -> None:
    job = await enqueue(client)
    assert job["priority"] == "normal"
    assert job["max_attempts"] == 3  # noop's default


async def test_a_seen_idempotency_key_answers_200_with_the_same_job(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    first = await enqueue(client, idempotency_key="order-42")
    again = await client.post("/jobs/enqueue", json={"type": "noop", "idempotency_key": "order-42"})
    assert again.status_code == 200
    assert again.json()["id"] == first["id"]
    assert again.json()["created"] is False
    assert (await queue.counts()).by_state[JobState.PENDING] == 1


async def test_delay_makes_a_delayed_job_scheduled_later(client: httpx.AsyncClient) -> None:
    job = await enqueue(client, delay_seconds=60)
    assert job["status"] == "delayed"
    scheduled = datetime.fromisoformat(str(job["scheduled_for"]))
    created = datetime.fromisoformat(str(job["created_at"]))
    assert 59 <= (scheduled - created).total_seconds() <= 61


async def test_typed_enqueue_takes_the_type_from_the_path(client: httpx.AsyncClient) -> None:
    response = await client.post("/noop/enqueue", json={"data": {"progress_steps": 2}})
    assert response.status_code == 201
    assert response.json()["type"] == "noop"


async def test_unknown_type_is_404_listing_the_known_types(client: httpx.AsyncClient) -> None:
    for response in (
        await client.post("/no-such-type/enqueue", json={}),
        await client.post("/jobs/enqueue", json={"type": "no-such-type"}),
    ):
        assert response.status_code == 404
        error = response.json()["error"]
        assert error["code"] == "unknown_job_type"
        assert "noop" in error["details"]["known_types"]
        assert "noop" in error["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "noop", "data": {"sleep_seconds": -1}}, "data.sleep_seconds"),
        ({"type": "noop", "data": {"surprise": 1}}, "data.surprise"),
        ({"type": "noop", "priority": "urgent"}, "priority"),
        ({"type": "noop", "attempts": 0}, "attempts"),
        ({"type": "noop", "backoff": {"type": "linear"}}, "backoff.type"),
        ({"type": "noop", "backoff": {"delay_seconds": 120, "max_delay_seconds": 60}}, "backoff"),
        ({"type": "noop", "delay_seconds": -5}, "delay_seconds"),
        ({"type": "noop", "colour": "red"}, "colour"),
        ({"data": {}}, "type"),
    ],
)
async def test_invalid_input_is_422_naming_the_field(
    client: httpx.AsyncClient, queue: JobQueue, body: dict[str, object], field: str
) -> None:
    response = await client.post("/jobs/enqueue", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert field in [e["field"] for e in error["details"]["errors"]]
    assert (await queue.counts()).by_state[JobState.PENDING] == 0


async def test_a_backoff_delay_above_the_default_cap_is_kept_not_cut(
    client: httpx.AsyncClient,
) -> None:
    body = {"type": "noop", "backoff": {"type": "fixed", "delay_seconds": 600}}
    response = await client.post("/jobs/enqueue", json=body)
    assert response.status_code == 201, response.text
    detail = (await client.get(f"/jobs/{response.json()['id']}")).json()
    assert detail["backoff"]["max_delay_seconds"] == 600


async def test_malformed_json_is_422_not_500(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/jobs/enqueue", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_status_has_every_documented_field_in_utc(client: httpx.AsyncClient) -> None:
    job = await enqueue(client)
    response = await client.get(f"/jobs/{job['id']}/status")
    assert response.status_code == 200
    status = response.json()
    assert set(status) >= {
        "id", "type", "status", "priority", "attempts_made", "max_attempts", "created_at",
        "scheduled_for", "started_at", "finished_at", "result", "error",
    }  # fmt: skip
    assert status["attempts_made"] == 0
    assert is_utc_iso(status["created_at"])
    assert is_utc_iso(status["scheduled_for"])
    assert status["started_at"] is None


async def test_progress_reports_status_progress_message_and_logs(
    client: httpx.AsyncClient,
) -> None:
    job = await enqueue(client)
    response = await client.get(f"/jobs/{job['id']}/progress")
    assert response.json() == {
        "id": job["id"], "status": "pending", "progress": 0.0, "message": None, "logs": []
    }  # fmt: skip


async def test_detail_has_data_timeline_and_logs(client: httpx.AsyncClient) -> None:
    job = await enqueue(client, data={"progress_steps": 3})
    detail = (await client.get(f"/jobs/{job['id']}")).json()
    assert detail["data"]["progress_steps"] == 3
    assert [entry["status"] for entry in detail["timeline"]] == ["pending"]
    assert detail["logs"] == []
    assert detail["traceback"] is None


@pytest.mark.parametrize("suffix", ["", "/status", "/progress", "/events"])
async def test_unknown_job_is_404_with_the_error_body(
    client: httpx.AsyncClient, suffix: str
) -> None:
    response = await client.get(f"/jobs/does-not-exist{suffix}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "job_not_found"


async def test_cancel_then_cancel_again_is_409_and_retry_requeues(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    job = await enqueue(client)
    cancelled = await client.delete(f"/jobs/{job['id']}")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["finished_at"] is not None
    again = await client.delete(f"/jobs/{job['id']}")
    assert again.status_code == 409
    assert again.json()["error"]["details"]["status"] == "cancelled"
    retried = await client.post(f"/jobs/{job['id']}/retry")
    assert retried.status_code == 200
    assert retried.json()["status"] == "pending"
    assert (await queue.counts()).by_state[JobState.PENDING] == 1


async def test_cancel_and_retry_of_unknown_jobs_are_404(client: httpx.AsyncClient) -> None:
    assert (await client.delete("/jobs/nope")).status_code == 404
    assert (await client.post("/jobs/nope/retry")).status_code == 404


async def test_retry_of_a_pending_job_is_409(client: httpx.AsyncClient) -> None:
    job = await enqueue(client)
    response = await client.post(f"/jobs/{job['id']}/retry")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_state"


async def test_bulk_enqueues_1000_jobs_in_request_order(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    jobs = [{"type": "noop", "data": {"progress_steps": i % 7}} for i in range(1000)]
    response = await client.post("/jobs/enqueue/bulk", json={"jobs": jobs})
    assert response.status_code == 201, response.text[:300]
    body = response.json()
    assert body["created"] == 1000
    assert len({item["id"] for item in body["items"]}) == 1000
    assert (await queue.counts()).by_state[JobState.PENDING] == 1000
    first = await queue.get(body["items"][6]["id"])
    assert first.data["progress_steps"] == 6


async def test_bulk_with_one_invalid_job_enqueues_nothing_and_names_it(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    jobs = [{"type": "noop"}, {"type": "noop", "data": {"sleep_seconds": -1}}, {"type": "zzz"}]
    response = await client.post("/jobs/enqueue/bulk", json={"jobs": jobs})
    assert response.status_code == 422
    fields = [e["field"] for e in response.json()["error"]["details"]["errors"]]
    assert fields == ["jobs.1.data.sleep_seconds", "jobs.2.type"]
    assert (await queue.counts()).by_state[JobState.PENDING] == 0


async def test_bulk_over_1000_jobs_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/jobs/enqueue/bulk", json={"jobs": [{"type": "noop"}] * 1001})
    assert response.status_code == 422
    assert response.json()["error"]["details"]["errors"][0]["field"] == "jobs"


async def test_job_types_lists_defaults_and_payload_schema(client: httpx.AsyncClient) -> None:
    types = {t["name"]: t for t in (await client.get("/jobs/types")).json()["items"]}
    noop = types["noop"]
    assert noop["defaults"]["attempts"] == 3
    assert noop["defaults"]["priority"] == "normal"
    assert set(noop["payload_schema"]["properties"]) == {
        "sleep_seconds", "fail_first_attempts", "progress_steps"
    }  # fmt: skip


DATASET = '{"type": "data-processing", "data": {"dataset": {"records": [%s]}}}'


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (DATASET % '{"a": "\\ud800"}', "data.dataset.records.0.a"),
        (DATASET % '{"a": ["ok", "x\\udfff"]}', "data.dataset.records.0.a.1"),
        (DATASET % '{"\\ud800": 1}', "data.dataset.records.0.'\\ud800'"),
    ],
)
async def test_text_without_a_utf8_form_is_422_naming_where_it_is(
    client: httpx.AsyncClient, queue: JobQueue, body: str, field: str
) -> None:
    # JSON may escape a lone surrogate; it could be neither stored nor sent back (was a 500).
    response = await client.post(
        "/jobs/enqueue", content=body.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["error"]["details"]["errors"]] == [field]
    assert (await queue.counts()).by_state[JobState.PENDING] == 0


async def test_bulk_with_text_without_a_utf8_form_enqueues_nothing(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    body = '{"jobs": [{"type": "noop"}, %s]}' % (DATASET % '{"a": "\\ud83d"}')
    response = await client.post(
        "/jobs/enqueue/bulk", content=body.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    fields = [e["field"] for e in response.json()["error"]["details"]["errors"]]
    assert fields == ["jobs.1.data.dataset.records.0.a"]
    assert (await queue.counts()).by_state[JobState.PENDING] == 0


def test_the_unicode_check_survives_any_nesting_depth() -> None:
    deep: list[object] = ["\udc80"]
    for _ in range(20_000):  # far deeper than Python's recursion limit
        deep = [deep]
    assert non_unicode_fields({"x": deep}) == ["data.x" + ".0" * 20_001]
    assert non_unicode_fields({"x": ["fine", {"emoji": "\U0001f600"}]}) == []
