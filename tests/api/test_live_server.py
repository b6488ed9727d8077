"""The API as clients meet it: a real `jobqueue api` (uvicorn) process over TCP."""

from __future__ import annotations

import httpx
import pytest
from api_harness import API_KEY, parse_sse

pytestmark = pytest.mark.slow

AUTH = {"X-API-Key": API_KEY}


def test_probes_answer_without_a_key(live_api: str) -> None:
    assert httpx.get(f"{live_api}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{live_api}/readyz").status_code == 200


def test_enqueue_status_cancel_round_trip_over_tcp(live_api: str) -> None:
    created = httpx.post(f"{live_api}/jobs/enqueue", json={"type": "noop"}, headers=AUTH)
    assert created.status_code == 201
    job_id = created.json()["id"]
    status = httpx.get(f"{live_api}/jobs/{job_id}/status", headers=AUTH)
    assert status.json()["status"] == "pending"
    assert httpx.delete(f"{live_api}/jobs/{job_id}", headers=AUTH).json()["status"] == "cancelled"
    assert httpx.delete(f"{live_api}/jobs/{job_id}", headers=AUTH).status_code == 409


def test_missing_key_is_401_over_tcp(live_api: str) -> None:
    response = httpx.get(f"{live_api}/jobs/stats")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_chunked_body_over_the_limit_is_413_over_tcp(live_api: str) -> None:
    # No Content-Length at all: only counting the bytes as they arrive can enforce the limit.
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"type": "noop", "data": {"pad": "'
        for _ in range(40):
            yield b"z" * 65536
        yield b'"}}'

    response = httpx.post(
        f"{live_api}/jobs/enqueue",
        content=chunks(),
        headers={**AUTH, "content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_events_of_a_finished_job_over_tcp(live_api: str) -> None:
    job_id = httpx.post(f"{live_api}/jobs/enqueue", json={"type": "noop"}, headers=AUTH).json()[
        "id"
    ]
    httpx.delete(f"{live_api}/jobs/{job_id}", headers=AUTH)
    with httpx.stream("GET", f"{live_api}/jobs/{job_id}/events", headers=AUTH) as response:
        text = response.read().decode()
    assert [name for name, _ in parse_sse(text)] == ["end"]


def test_openapi_lists_every_spec_path(live_api: str) -> None:
    paths = httpx.get(f"{live_api}/openapi.json").json()["paths"]
    expected = {
        "/jobs/enqueue": {"post"}, "/{type}/enqueue": {"post"}, "/jobs/{id}/status": {"get"},
        "/jobs/{id}/progress": {"get"}, "/jobs/{id}": {"get", "delete"},
        "/jobs/stats": {"get"}, "/jobs/health": {"get"}, "/jobs/workers": {"get"},
        "/jobs/failed": {"get"}, "/jobs/pending": {"get"}, "/jobs/active": {"get"},
        "/jobs/{type}/jobs": {"get"}, "/jobs/{id}/retry": {"post"}, "/jobs/completed": {"get"},
        "/jobs/delayed": {"get"}, "/jobs/cancelled": {"get"}, "/jobs/enqueue/bulk": {"post"},
        "/jobs/{id}/events": {"get"}, "/healthz": {"get"}, "/readyz": {"get"},
        "/jobs/types": {"get"}, "/metrics": {"get"},
    }  # fmt: skip
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
