"""The access log of a real `jobqueue api` never holds an API key sent in the query string."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from api_harness import API_KEY, BIN, ROOT, free_port, service_env, stop_process, wait_ready

pytestmark = pytest.mark.slow


def test_a_key_in_the_url_is_refused_and_scrubbed_from_the_access_log(
    redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    port = free_port()
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "jobqueue"), "api", "--host", "127.0.0.1", "--port", str(port)],
            env=service_env(redis_url, queue_name, ACCESS_LOG="true"),  # off by default
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        refused = httpx.get(f"{base}/jobs/stats?api_key={API_KEY}&limit=1")
        also_refused = httpx.get(f"{base}/healthz", params={"token": API_KEY})
        marker = httpx.get(f"{base}/healthz?after=refusals")  # logged after the two above
    finally:
        stop_process(process)
    assert (refused.status_code, also_refused.status_code, marker.status_code) == (400, 400, 200)
    log_text = log_path.read_text()
    assert "after=refusals" in log_text, "the access log was not written"
    assert "api_key=***" in log_text and "token=***" in log_text
    assert API_KEY not in log_text
