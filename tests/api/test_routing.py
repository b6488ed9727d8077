"""Routing: fixed paths win over `{id}` and `{type}` for every method, 405s name exactly the
methods a path answers, and no job type can be named like a fixed path."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from service.jobs.registry import JobRegistry, JobType, JobTypeDefaults
from service.queue.queue import JobQueue
from service.queue.states import JobState


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/jobs/stats", "GET"),
        ("DELETE", "/jobs/types", "GET"),
        ("DELETE", "/jobs/pending", "GET"),
        ("DELETE", "/jobs/failed", "GET"),
        ("POST", "/jobs/workers", "GET"),
        ("GET", "/jobs/enqueue", "POST"),
        ("DELETE", "/jobs/enqueue", "POST"),
    ],
)
async def test_a_fixed_path_answers_405_instead_of_reaching_a_template(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    # Without the rule these reach `/jobs/{id}` and answer "no job with id 'stats'" (404).
    response = await client.request(method, path)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allow
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_templates_still_answer_every_other_path(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    job = (await client.post("/jobs/enqueue", json={"type": "noop"})).json()
    assert (await client.get(f"/jobs/{job['id']}")).status_code == 200
    assert (await client.delete(f"/jobs/{job['id']}")).status_code == 200
    assert (await queue.get(job["id"])).state is JobState.CANCELLED
    assert (await client.post("/noop/enqueue", json={})).status_code == 201


@pytest.mark.parametrize(
    "path", ["/ui", "/ui/static/app.js", "/openapi.json", "/healthz", "/jobs/abc", "/noop/enqueue"]
)
async def test_allow_lists_exactly_the_methods_that_work(
    client: httpx.AsyncClient, path: str
) -> None:
    refused = await client.put(path)
    assert refused.status_code == 405
    allow = [m.strip() for m in refused.headers["allow"].split(",")]
    assert allow, path  # a 405 must say what is allowed
    for method in allow:
        body = {} if method == "POST" else None
        response = await client.request(method, path, json=body)
        assert response.status_code != 405, (method, path)


async def test_head_is_not_advertised_where_it_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.head("/healthz")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/No_Such/enqueue"), ("GET", "/jobs/NoSuch/jobs"), ("POST", "/jobs.x/enqueue")],
)
async def test_a_type_that_cannot_exist_is_the_same_404_listing_the_types(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, json={} if method == "POST" else None)
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["code"] == "unknown_job_type"
    assert "noop" in error["details"]["known_types"]


class _Payload(BaseModel):
    pass


async def _handler(_: object, __: object) -> None:
    return None


def _type_named(name: str) -> JobType:
    return JobType(name, _Payload, _handler, JobTypeDefaults(), "")


def _words_in_type_positions(app: FastAPI) -> set[str]:
    # `{type}` sits at the top level (`/{type}/enqueue`) and under /jobs (`/jobs/{type}/jobs`);
    # every fixed word in those two places is a name a type must not take.
    paths = [*app.openapi()["paths"], "/ui"]
    words = {path.split("/")[1] for path in paths}
    words |= {path.split("/")[2] for path in paths if path.startswith("/jobs/")}
    return {word for word in words if word and "{" not in word and "." not in word}


def test_no_job_type_can_be_named_like_a_fixed_path(app: FastAPI) -> None:
    words = _words_in_type_positions(app)
    assert {"jobs", "stats", "failed", "pending", "active", "types", "metrics"} <= words
    for word in sorted(words):
        with pytest.raises(ValueError, match="must be"):
            JobRegistry().add(_type_named(word))
    JobRegistry().add(_type_named("stats-export"))  # only the exact words are taken
