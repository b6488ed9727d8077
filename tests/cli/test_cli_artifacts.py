"""`jobqueue artifacts ID [--out DIR]` as users run it: a real API and worker for the local
store, and a stand-in API that redirects like the S3 store does (to check the key stays home).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from api_harness import API_KEY, api_server, delete_queue_sync, unique_queue, worker

from tests.cli.cli_runner import run_against

CSV = "region,units\nnorth,10\nsouth,7\n"
REPORT_BYTES = b"region,units\r\nnorth,10\r\nsouth,7\r\n"


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.fixture(scope="module")
def finished_report(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, Path]]:
    """A real API and worker with one finished CSV report; yields (base URL, job id, store)."""
    store = tmp_path_factory.mktemp("artifacts")
    name = unique_queue()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ARTIFACT_DIR", str(store))
        mp.delenv("ARTIFACT_BUCKET", raising=False)
        with api_server(redis_url, name) as base, worker(redis_url, name):
            headers = {"X-API-Key": API_KEY}
            data = {"dataset": {"csv": CSV}, "format": "csv"}
            body = {"type": "report-generation", "data": data}
            job_id = httpx.post(f"{base}/jobs/enqueue", json=body, headers=headers).json()["id"]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status = httpx.get(f"{base}/jobs/{job_id}/status", headers=headers).json()
                if status["status"] == "completed":
                    break
                time.sleep(0.1)
            assert status["status"] == "completed", status
            yield base, job_id, store
    delete_queue_sync(redis_url, name)


@pytest.mark.slow
def test_artifacts_lists_the_jobs_outputs_as_json(finished_report):
    base, job_id, store = finished_report
    result = run_against(base, "artifacts", job_id)
    assert result.returncode == 0, result.stderr
    path = store / "report-generation" / job_id / "report.csv"
    assert json.loads(result.stdout) == {
        "job_id": job_id,
        "items": [
            {
                "name": "report.csv",
                "uri": path.resolve().as_uri(),
                "size_bytes": len(REPORT_BYTES),
                "content_type": "text/csv",
                "download_url": f"/jobs/{job_id}/artifacts/report.csv",
            }
        ],
    }


@pytest.mark.slow
def test_artifacts_out_downloads_each_into_the_folder_and_prints_its_path(
    finished_report, tmp_path
):
    base, job_id, store = finished_report
    folder = tmp_path / "downloads" / "new"  # created if missing
    result = run_against(base, "artifacts", job_id, "--out", str(folder))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(folder / "report.csv")]
    stored = (store / "report-generation" / job_id / "report.csv").read_bytes()
    assert (folder / "report.csv").read_bytes() == stored == REPORT_BYTES
    assert sorted(p.name for p in folder.iterdir()) == ["report.csv"]  # no temp file left
    assert (folder / "report.csv").stat().st_mode & 0o777 == 0o666 & ~current_umask()


@pytest.mark.slow
def test_artifacts_of_an_unknown_job_is_refused(finished_report):
    base, _, _ = finished_report
    result = run_against(base, "artifacts", "no-such-job")
    assert result.returncode == 3
    assert result.stderr.strip() == "jobqueue: 404: no job with id 'no-such-job'"


# --- the S3 redirect, with a stand-in API ----------------------------------------------------


class FakeS3Api(BaseHTTPRequestHandler):
    """Lists one artifact, answers its download with 307 to a presigned-style URL, serves it."""

    seen: ClassVar[list[tuple[str, str | None]]] = []
    body = b"\x89PNG fake image bytes"

    def do_GET(self) -> None:
        FakeS3Api.seen.append((self.path, self.headers.get("X-API-Key")))
        port = self.server.server_address[1]
        if self.path == "/jobs/j1/artifacts":
            item = {"name": "output.png", "uri": "s3://bucket/image-processing/j1/output.png",
                    "size_bytes": len(self.body), "content_type": "image/png",
                    "download_url": "/jobs/j1/artifacts/output.png"}  # fmt: skip
            self._send(200, json.dumps({"job_id": "j1", "items": [item]}).encode())
        elif self.path == "/jobs/j1/artifacts/output.png":
            self.send_response(307)
            self.send_header(
                "Location", f"http://127.0.0.1:{port}/bucket/out.png?X-Amz-Signature=s"
            )
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path.startswith("/bucket/out.png?"):
            self._send(200, self.body)
        else:
            self._send(404, b"{}")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_s3_api() -> Iterator[str]:
    FakeS3Api.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeS3Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_artifacts_out_follows_the_redirect_without_sending_the_key(fake_s3_api, tmp_path):
    result = run_against(fake_s3_api, "artifacts", "j1", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(tmp_path / "output.png")]
    assert (tmp_path / "output.png").read_bytes() == FakeS3Api.body
    assert [(path.split("?")[0], key) for path, key in FakeS3Api.seen] == [
        ("/jobs/j1/artifacts", API_KEY),
        ("/jobs/j1/artifacts/output.png", API_KEY),
        ("/bucket/out.png", None),  # the presigned URL gets no API key
    ]
