"""The schedules API over real HTTP handling (ASGI) and a real Redis: create, replace, read
with upcoming runs, pause, resume, trigger, delete, and bad input naming its field."""

from __future__ import annotations

from typing import Any

import httpx
import pytest


async def test_put_creates_then_replaces_and_get_shows_five_upcoming_runs(
    client: httpx.AsyncClient,
) -> None:
    body = {"type": "noop", "cron": "0 2 * * *", "timezone": "Europe/Berlin"}
    created = await client.put("/schedules/nightly", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["next_run_at"] is not None
    replaced = await client.put("/schedules/nightly", json={**body, "options": {"attempts": 3}})
    assert replaced.status_code == 200
    assert replaced.json()["job"]["attempts"] == 3
    detail = (await client.get("/schedules/nightly")).json()
    assert len(detail["upcoming"]) == 5
    assert detail["upcoming"][0] == detail["next_run_at"]
    assert [s["id"] for s in (await client.get("/schedules")).json()] == ["nightly"]


async def test_upcoming_runs_stop_at_the_limit(client: httpx.AsyncClient) -> None:
    body = {"type": "noop", "every_seconds": 3600, "limit": 2}
    detail = (await client.put("/schedules/twice", json=body)).json()
    assert len(detail["upcoming"]) == 2  # not five: only two runs will happen


async def test_pause_resume_trigger_and_delete(client: httpx.AsyncClient) -> None:
    await client.put("/schedules/s", json={"type": "noop", "every_seconds": 3600})
    paused = (await client.post("/schedules/s/pause")).json()
    assert (paused["paused"], paused["next_run_at"]) == (True, None)
    resumed = (await client.post("/schedules/s/resume")).json()
    assert resumed["paused"] is False
    assert resumed["next_run_at"] is not None
    triggered = await client.post("/schedules/s/trigger")
    assert triggered.status_code == 201
    job_id = triggered.json()["job_id"]
    assert (await client.get(f"/jobs/{job_id}")).json()["status"] == "pending"
    runs = (await client.get("/schedules/s")).json()["last_runs"]
    assert runs == [{"job_id": job_id, "state": "pending"}]
    assert (await client.delete("/schedules/s")).status_code == 204
    for method, path in [
        ("GET", "/schedules/s"),
        ("DELETE", "/schedules/s"),
        ("POST", "/schedules/s/pause"),
        ("POST", "/schedules/s/resume"),
        ("POST", "/schedules/s/trigger"),
    ]:
        assert (await client.request(method, path)).status_code == 404, (method, path)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "noop", "cron": "not cron"}, "cron"),
        ({"type": "noop", "cron": "* * * * *", "timezone": "Nowhere/City"}, "timezone"),
        ({"type": "noop", "every_seconds": 0}, "every_seconds"),
        ({"type": "noop"}, "cron"),
        ({"type": "noop", "cron": "* * * * *", "every_seconds": 1}, "cron"),
        (
            {
                "type": "noop",
                "every_seconds": 1,
                "start_at": "2030-01-02T00:00:00Z",
                "end_at": "2030-01-01T00:00:00Z",
            },
            "end_at",
        ),
        ({"type": "noop", "every_seconds": 1, "limit": 0}, "limit"),
        ({"type": "no-such-type", "every_seconds": 1}, "type"),
        # Once a 500 (TypeError): the priority reader called int() on whatever it was given.
        (
            {"type": "noop", "every_seconds": 1, "options": {"priority": {"level": 15}}},
            "options.priority",
        ),
        ({"type": "noop", "every_seconds": 1, "options": {"priority": [15]}}, "options.priority"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.put("/schedules/bad", json=body)
    assert response.status_code == 422, response.text
    fields = [e["field"] for e in response.json()["error"]["details"]["errors"]]
    assert field in fields
    assert (await client.get("/schedules/bad")).status_code == 404
