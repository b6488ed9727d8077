"""Hostile or careless input gets a clear 4xx that says what to fix, and nothing is stored:
keys in the URL, bodies not in UTF-8, lax payload types, deep nesting, forged cursors; and the
public routes say no more than they must."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from api_harness import API_KEY, app_settings, free_port

from service.api.app import DESCRIPTION, create_app
from service.jobs.registry import MAX_DATA_DEPTH
from service.queue.errors import InvalidRequestError
from service.queue.queue import JobQueue
from service.queue.states import JobState


async def _pending(queue: JobQueue) -> int:
    return (await queue.counts()).by_state[JobState.PENDING]


@pytest.mark.parametrize("name", ["api_key", "apikey", "token", "key", "access_token"])
async def test_a_key_in_the_query_string_is_refused_on_every_path(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, name: str
) -> None:
    for http, path in ((client, "/jobs/stats"), (anon, "/healthz"), (anon, "/readyz")):
        response = await http.get(path, params={name: API_KEY})
        assert response.status_code == 400, path
        error = response.json()["error"]
        assert error["code"] == "credential_in_url"
        assert "X-API-Key" in error["message"]
        assert API_KEY not in response.text


async def test_a_key_in_the_query_string_does_not_enqueue(
    anon: httpx.AsyncClient, queue: JobQueue
) -> None:
    response = await anon.post("/jobs/enqueue", params={"api_key": API_KEY}, json={"type": "noop"})
    assert response.status_code == 400
    assert await _pending(queue) == 0


@pytest.fixture
async def down_app_clients(queue_name: str) -> AsyncIterator[tuple[httpx.AsyncClient, ...]]:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(app_settings(closed, queue_name))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api.test") as anon,
        httpx.AsyncClient(
            transport=transport, base_url="http://api.test", headers={"X-API-Key": API_KEY}
        ) as keyed,
    ):
        yield anon, keyed


async def test_readyz_says_only_not_ready_without_a_key(
    down_app_clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    anon, keyed = down_app_clients

    public = await anon.get("/readyz")
    operator = await keyed.get("/readyz")

    assert public.status_code == operator.status_code == 503
    assert public.headers["retry-after"] == "5"
    assert public.json() == {"error": {"code": "not_ready", "message": "not ready", "details": {}}}
    assert "127.0.0.1" not in public.text
    assert operator.json()["error"]["code"] == "queue_unavailable"
    assert "127.0.0.1" in operator.json()["error"]["details"]["reason"]


async def test_the_documentation_is_public_as_the_description_says(
    anon: httpx.AsyncClient,
) -> None:
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert (await anon.get(path)).status_code == 200, path
    assert (await anon.get("/jobs/stats")).status_code == 401
    description = (await anon.get("/openapi.json")).json()["info"]["description"]
    assert description == DESCRIPTION
    for public in ("`/healthz`", "`/readyz`", "`/docs`", "`/openapi.json`", "`/ui`"):
        assert public in description
    assert f"at most {MAX_DATA_DEPTH} levels" in description


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"sleep_seconds": "5"}, "data.sleep_seconds"),
        ({"progress_steps": True}, "data.progress_steps"),
        ({"fail_first_attempts": 1.5}, "data.fail_first_attempts"),
    ],
)
async def test_payload_types_are_strict(
    client: httpx.AsyncClient, queue: JobQueue, data: dict[str, object], field: str
) -> None:
    response = await client.post("/jobs/enqueue", json={"type": "noop", "data": data})
    assert response.status_code == 422
    assert response.json()["error"]["details"]["errors"][0]["field"] == field
    assert await _pending(queue) == 0


async def test_strict_payloads_still_take_json_forms(client: httpx.AsyncClient) -> None:
    # An integer where a float is expected is a JSON number all the same.
    response = await client.post(
        "/jobs/enqueue", json={"type": "noop", "data": {"sleep_seconds": 0, "progress_steps": 2}}
    )
    assert response.status_code == 201


BODY = '{"type": "noop", "data": {"sleep_seconds": 0}}'


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (BODY.encode("utf-16"), "application/json"),  # with a BOM
        (BODY.encode("utf-16-le"), "application/json"),
        (BODY.encode("utf-32"), "application/json"),
        (BODY.encode("utf-16"), None),
        (BODY.encode() + b"\xff", "application/json"),
        (BODY.encode(), "application/json; charset=utf-16"),
    ],
)
async def test_a_body_not_in_utf8_is_refused_and_says_so(
    client: httpx.AsyncClient, queue: JobQueue, raw: bytes, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/jobs/enqueue", content=raw, headers=headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_encoding"
    assert "UTF-8" in error["message"]
    assert await _pending(queue) == 0


async def test_utf8_bodies_pass_with_or_without_a_charset(client: httpx.AsyncClient) -> None:
    for content_type in ("application/json", "application/json; charset=utf-8"):
        data = '{"type": "noop", "idempotency_key": "é-' + content_type[-5:] + '"}'
        response = await client.post(
            "/jobs/enqueue", content=data.encode(), headers={"content-type": content_type}
        )
        assert response.status_code == 201, response.text


def _nested(depth: int) -> str:
    # `data` itself is level 1, each list one more.
    inner = "[" * (depth - 1) + "]" * (depth - 1)
    records = '{"records": [{"x": ' + inner + "}]}"
    return '{"type": "data-processing", "data": {"dataset": ' + records + "}}"


async def _post_json(client: httpx.AsyncClient, text: str) -> httpx.Response:
    return await client.post(
        "/jobs/enqueue", content=text, headers={"content-type": "application/json"}
    )


async def test_data_may_nest_up_to_the_documented_depth(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    # data, dataset, records, the record: four levels, then `x` holds depth - 1 nested lists.
    at_limit = await _post_json(client, _nested(MAX_DATA_DEPTH - 3))
    over = await _post_json(client, _nested(MAX_DATA_DEPTH - 2))

    assert at_limit.status_code == 201, at_limit.text
    assert over.status_code == 422
    assert f"{MAX_DATA_DEPTH} levels" in over.json()["error"]["message"]
    assert await _pending(queue) == 1


@pytest.mark.parametrize("depth", [256, 300, 5_000, 100_000])
async def test_deeply_nested_json_is_422_naming_the_limit(
    client: httpx.AsyncClient, queue: JobQueue, depth: int
) -> None:
    response = await _post_json(client, _nested(depth))
    assert response.status_code == 422, response.text
    assert f"at most {MAX_DATA_DEPTH} levels" in response.json()["error"]["message"] or (
        f"more than {MAX_DATA_DEPTH} levels" in response.json()["error"]["message"]
    )
    assert await _pending(queue) == 0


async def test_deep_nesting_in_a_bulk_request_names_the_job(client: httpx.AsyncClient) -> None:
    deep = json.loads(_nested(100))
    response = await client.post("/jobs/enqueue/bulk", json={"jobs": [{"type": "noop"}, deep]})
    assert response.status_code == 422
    assert response.json()["error"]["details"]["errors"][0]["field"] == "jobs.1.data"


@pytest.mark.parametrize(
    "cursor", ["12345678901234567890", "99999999999999999", "9007199254740993:abc", "-5:x"]
)
async def test_a_cursor_no_page_could_have_returned_is_422(
    client: httpx.AsyncClient, cursor: str
) -> None:
    for path in ("/jobs/pending", "/jobs/completed", "/jobs/noop/jobs"):
        response = await client.get(path, params={"cursor": cursor})
        assert response.status_code == 422, (path, cursor, response.text)
        assert response.json()["error"]["details"]["errors"][0]["field"] == "cursor"


@pytest.mark.parametrize("cursor", ["12345678901234567890", "inf", "nan:x", "9007199254740993"])
async def test_the_python_api_refuses_forged_cursors_too(queue: JobQueue, cursor: str) -> None:
    with pytest.raises(InvalidRequestError):
        await queue.list_jobs(JobState.PENDING, cursor=cursor)
