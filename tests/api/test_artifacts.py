"""Downloading job outputs: `GET /jobs/{id}/artifacts` and `GET /jobs/{id}/artifacts/{name}`.

A real API and a real worker run image and report jobs into a local ARTIFACT_DIR; the S3 store
is checked in-process under moto (a subprocess cannot see moto's mock), down to fetching the
presigned URL it redirects to.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import httpx
import pytest
import requests
from api_harness import API_KEY, api_server, app_settings, worker
from moto import mock_aws
from PIL import Image

from service.api.app import create_app
from service.artifacts import artifacts_in
from service.jobs import load_job_types
from service.jobs.registry import REGISTRY
from service.queue.consumer import Consumer, Outcome
from service.queue.job_context import JobContext
from service.queue.queue import JobQueue, QueueConfig
from service.settings import get_settings

HEADERS = {"X-API-Key": API_KEY}
BUCKET = "jobqueue-artifacts-download-test"
JOB_SECONDS = 60.0
CSV = "region,units\nnorth,10\nsouth,7\n"


def png_base64(size: tuple[int, int] = (40, 30)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def wait_completed(api: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_SECONDS
    while time.monotonic() < deadline:
        job: dict[str, Any] = api.get(f"/jobs/{job_id}/status").raise_for_status().json()
        if job["status"] in ("completed", "failed", "cancelled"):
            assert job["status"] == "completed", job
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {JOB_SECONDS} s")


def raw_get(base: str, path: str) -> tuple[int, dict[str, Any], bytes]:
    """GET `path` exactly as written: httpx would resolve `..` before sending it."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request("GET", path, headers=HEADERS)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    try:
        parsed: dict[str, Any] = json.loads(body)
    except ValueError:
        parsed = {}
    return response.status, parsed, body


@pytest.fixture(scope="module")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="module")
def stack(redis_url: str, artifact_dir: Path) -> Iterator[tuple[httpx.Client, str, str]]:
    """A real API and worker sharing ARTIFACT_DIR, with one image and one report job done.

    Yields the client, the image job's id and the report job's id.
    """
    from api_harness import delete_queue_sync, unique_queue

    queue_name = unique_queue()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ARTIFACT_DIR", str(artifact_dir))  # the worker reads it from its environment
        mp.delenv("ARTIFACT_BUCKET", raising=False)
        with (
            api_server(redis_url, queue_name) as base,
            worker(redis_url, queue_name),
            httpx.Client(base_url=base, headers=HEADERS, timeout=10) as api,
        ):
            image = {"image_base64": png_base64(), "output_format": "PNG",
                     "operations": [{"op": "resize", "width": 20, "height": 15}]}  # fmt: skip
            report = {"dataset": {"csv": CSV}, "format": "csv", "title": "Units"}
            ids = [
                api.post("/jobs/enqueue", json={"type": kind, "data": data})
                .raise_for_status()
                .json()["id"]
                for kind, data in (("image-processing", image), ("report-generation", report))
            ]
            for job_id in ids:
                wait_completed(api, job_id)
            yield api, ids[0], ids[1]
    delete_queue_sync(redis_url, queue_name)


@pytest.mark.slow
def test_image_job_lists_its_output_with_size_type_and_download_url(stack, artifact_dir):
    api, image_id, _ = stack
    result = api.get(f"/jobs/{image_id}/status").json()["result"]
    listing = api.get(f"/jobs/{image_id}/artifacts").raise_for_status().json()
    assert listing == {
        "job_id": image_id,
        "items": [
            {
                "name": "output.png",
                "uri": result["output_uri"],
                "size_bytes": result["size_bytes"],
                "content_type": "image/png",
                "download_url": f"/jobs/{image_id}/artifacts/output.png",
            }
        ],
    }
    path = artifact_dir / "image-processing" / image_id / "output.png"
    assert result["output_uri"] == path.resolve().as_uri()


@pytest.mark.slow
def test_download_streams_the_bytes_the_store_holds(stack, artifact_dir):
    api, image_id, report_id = stack
    response = api.get(f"/jobs/{image_id}/artifacts/output.png")
    assert response.status_code == 200
    stored = (artifact_dir / "image-processing" / image_id / "output.png").read_bytes()
    assert response.content == stored
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"] == 'attachment; filename="output.png"'
    assert response.headers["content-length"] == str(len(stored))
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.size == (20, 15)
    # No ranges: the schema documents 200 with the whole file, so that is what a Range gets.
    ranged = api.get(f"/jobs/{image_id}/artifacts/output.png", headers={"Range": "bytes=0-3"})
    assert (ranged.status_code, ranged.content) == (200, stored)

    report = api.get(f"/jobs/{report_id}/artifacts/report.csv")
    assert report.status_code == 200
    assert report.content == b"region,units\r\nnorth,10\r\nsouth,7\r\n"
    assert (
        report.content
        == (artifact_dir / "report-generation" / report_id / "report.csv").read_bytes()
    )
    assert report.headers["content-type"].startswith("text/csv")


@pytest.mark.slow
def test_unknown_job_is_job_not_found_on_both_routes(stack):
    api, _, _ = stack
    for path in ("/jobs/no-such-job/artifacts", "/jobs/no-such-job/artifacts/output.png"):
        response = api.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "job_not_found"


@pytest.mark.slow
def test_a_name_the_job_lacks_is_404_naming_the_ones_it_has(stack, artifact_dir):
    api, image_id, _ = stack
    # A real file next to the output, but not in the job's result: not served.
    (artifact_dir / "image-processing" / image_id / "other.txt").write_text("not listed")
    for name in ("other.txt", "report.csv"):
        response = api.get(f"/jobs/{image_id}/artifacts/{name}")
        assert response.status_code == 404
        error = response.json()["error"]
        assert error["code"] == "artifact_not_found"
        assert error["details"]["available"] == ["output.png"]
        assert f"no artifact named '{name}'; it has: output.png" in error["message"]


@pytest.mark.slow
def test_traversal_attempts_never_reach_a_file(stack, artifact_dir):
    api, image_id, _ = stack
    secret = artifact_dir.parent / "secret.txt"
    secret.write_text("TOP-SECRET")
    base = str(api.base_url).rstrip("/")
    prefix = f"/jobs/{image_id}/artifacts/"
    attempts = {
        "..": 404, "%2e%2e": 404, "%2E%2E": 404, ".": 404,
        "..%2f..%2f..%2fsecret.txt": 404, "%2e%2e%2f%2e%2e%2fsecret.txt": 404,
        "../../../secret.txt": 404, "%2fetc%2fpasswd": 404, "/etc/passwd": 404,
        "..%5c..%5csecret.txt": 422, "a%5cb": 422, "%00": 422,
    }  # fmt: skip
    for name, status in attempts.items():
        got, body, raw = raw_get(base, prefix + name)
        assert got == status, (name, got, body)
        assert b"TOP-SECRET" not in raw
        assert body["error"]["code"] in ("artifact_not_found", "not_found", "validation_error")
        if status == 422:
            assert body["error"]["details"]["errors"][0]["field"] == "name"


@pytest.mark.slow
def test_a_listed_artifact_whose_file_is_gone_is_artifact_missing(stack, artifact_dir):
    api, _, report_id = stack
    path = artifact_dir / "report-generation" / report_id / "report.csv"
    kept = path.read_bytes()
    path.unlink()
    try:
        response = api.get(f"/jobs/{report_id}/artifacts/report.csv")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "artifact_missing"
    finally:
        path.write_bytes(kept)


async def test_a_job_without_a_result_has_no_artifacts(client):
    job = (await client.post("/noop/enqueue", json={"delay_seconds": 3600})).json()
    listing = (await client.get(f"/jobs/{job['id']}/artifacts")).json()
    assert listing == {"job_id": job["id"], "items": []}
    response = await client.get(f"/jobs/{job['id']}/artifacts/output.png")
    assert response.status_code == 404
    assert "it has none (status delayed)" in response.json()["error"]["message"]


def test_every_uri_in_a_result_is_an_artifact_with_a_unique_name():
    result = {
        "uri": "file:///data/a/report.pdf", "size_bytes": 12, "content_type": "application/pdf",
        "parts": [{"output_uri": "s3://b/x/report.pdf"}, "s3://b/y/data%20set.csv"],
        "note": "not a uri", "again": "file:///data/a/report.pdf",
    }  # fmt: skip
    refs = [(r.name, r.uri, r.size_bytes, r.content_type) for r in artifacts_in(result)]
    assert refs == [
        ("report.pdf", "file:///data/a/report.pdf", 12, "application/pdf"),
        ("2-report.pdf", "s3://b/x/report.pdf", None, "application/pdf"),
        ("data_set.csv", "s3://b/y/data%20set.csv", None, "text/csv"),
    ]
    assert artifacts_in(None) == []


# --- S3 ------------------------------------------------------------------------------------------


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto S3 with an empty bucket; jobs in this process store their artifacts in it."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "ARTIFACT_BUCKET": BUCKET,
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client
    get_settings.cache_clear()


async def run_report_in_process(queue: JobQueue) -> str:
    """Enqueue a CSV report, run it as a worker does, and store its result; returns its id."""
    load_job_types()
    job_type = REGISTRY.get("report-generation")
    spec = job_type.build_spec({"dataset": {"csv": CSV}, "format": "csv"}, QueueConfig())
    job_id = (await queue.enqueue(spec)).job.id
    consumer = Consumer(queue, "test-worker", lease_seconds=60)
    deliveries, _ = await consumer.dequeue(1)
    assert [d.job_id for d in deliveries] == [job_id]
    context = JobContext(job_id=job_id, job_type="report-generation", attempt=1,
                         max_attempts=spec.attempts, consumer=consumer)  # fmt: skip
    result = await job_type.run(spec.data, context)
    await consumer.finish_many([Outcome(job_id, completed=True, payload=json.dumps(result))])
    return job_id


@pytest.fixture
async def s3_client(redis_url, queue_name, queue, s3) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(app_settings(redis_url, queue_name, artifact_bucket=BUCKET))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api.test", headers=HEADERS
        ) as c:
            yield c


async def test_s3_download_is_a_307_to_a_presigned_url_that_serves_the_object(queue, s3, s3_client):
    job_id = await run_report_in_process(queue)
    key = f"report-generation/{job_id}/report.csv"
    listing = (await s3_client.get(f"/jobs/{job_id}/artifacts")).json()
    assert [(i["name"], i["uri"], i["content_type"]) for i in listing["items"]] == [
        ("report.csv", f"s3://{BUCKET}/{key}", "text/csv")
    ]

    response = await s3_client.get(f"/jobs/{job_id}/artifacts/report.csv")
    assert response.status_code == 307
    assert response.headers["cache-control"] == "no-store"
    location = urlsplit(response.headers["location"])
    query = parse_qs(location.query)
    assert f"{location.netloc}{location.path}".startswith(f"{BUCKET}.s3.amazonaws.com/")
    assert unquote(location.path) == f"/{key}"
    assert query["X-Amz-Expires"] == ["300"]
    assert query["X-Amz-Signature"][0]
    assert query["response-content-disposition"] == ['attachment; filename="report.csv"']
    assert API_KEY not in response.headers["location"]

    fetched = requests.get(response.headers["location"], timeout=10)  # served by moto
    assert fetched.status_code == 200
    stored = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert fetched.content == stored == b"region,units\r\nnorth,10\r\nsouth,7\r\n"


async def test_s3_store_refuses_names_and_jobs_it_does_not_have(queue, s3, s3_client):
    job_id = await run_report_in_process(queue)
    response = await s3_client.get(f"/jobs/{job_id}/artifacts/other.csv")
    assert response.status_code == 404
    assert response.json()["error"]["details"]["available"] == ["report.csv"]
    response = await s3_client.get("/jobs/nope/artifacts/report.csv")
    assert response.json()["error"]["code"] == "job_not_found"
