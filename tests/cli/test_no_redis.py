"""The server commands against a Redis that does not answer: one line naming it (password
masked), no traceback; the worker retries, then gives up with its own exit code."""

from __future__ import annotations

import os
import subprocess
import time

import httpx
import pytest
from api_harness import API_KEY, BIN, free_port

pytestmark = pytest.mark.slow

JOBQUEUE = str(BIN / "jobqueue")
NOBODY = "redis://user:s3cret@127.0.0.1:{port}/0"


def env_for(url: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("REDIS_HOST", "API_KEYS_FILE")}
    return {**base, "REDIS_URL": url, "API_KEYS": API_KEY, "ENVIRONMENT": "test", **extra}


def test_worker_retries_an_unreachable_redis_then_exits_5() -> None:
    url = NOBODY.format(port=free_port())
    masked = url.replace("s3cret", "***")
    result = subprocess.run(
        [JOBQUEUE, "worker"], env=env_for(url, REDIS_CONNECT_ATTEMPTS="2"),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 5, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith(f"jobqueue: Redis at {masked} is unreachable (")
    assert lines[0].endswith("; retrying in 1 s (attempt 2 of 2)")
    assert lines[1].startswith(f"jobqueue: Redis at {masked} is unreachable (")
    assert lines[1].endswith("; gave up after 2 attempt(s) (REDIS_CONNECT_ATTEMPTS)")
    assert "s3cret" not in result.stderr + result.stdout


def test_api_names_an_unreachable_redis_in_one_line_and_serves_503() -> None:
    url, port = NOBODY.format(port=free_port()), free_port()
    api = subprocess.Popen(
        [JOBQUEUE, "api", "--port", str(port)], env=env_for(url),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline, ready = time.monotonic() + 30, None
        while ready is None and time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
            except httpx.TransportError:
                time.sleep(0.2)
        assert ready is not None
        assert ready.status_code == 503
    finally:
        api.terminate()
        stdout, stderr = api.communicate(timeout=30)
    problems = [ln for ln in stderr.splitlines() if "unreachable" in ln]
    assert problems == [
        f"jobqueue: Redis at {url.replace('s3cret', '***')} is unreachable (Error 111 "
        f"connecting to 127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}. Connection refused.); "
        "the API answers 503 until it is"
    ], stderr
    assert "Traceback" not in stderr + stdout
    assert "address in use" not in stderr
    assert "s3cret" not in stderr + stdout
