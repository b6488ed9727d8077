"""Helpers shared by the API and CLI tests: settings, a real uvicorn server, a real worker."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
API_KEY = "test-api-key-0123456789abcdef"
OTHER_KEY = "second-key-abcdefghijklmnop"
STARTUP_SECONDS = 30.0


def app_settings(redis_url: str, queue_name: str, **overrides: Any) -> Settings:
    """Settings for an app on the test server and queue, with the test keys."""
    values: dict[str, Any] = {
        "environment": "test",
        "redis_url": redis_url,
        "queue_name": queue_name,
        "key_prefix": "jqtest",
        "api_keys": f"{API_KEY},{OTHER_KEY}",
        **overrides,
    }
    return Settings(**values)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(redis_url: str, queue_name: str, **extra: str) -> dict[str, str]:
    """The environment a real API or worker process gets in these tests."""
    env = {k: v for k, v in os.environ.items() if k not in ("API_KEYS_FILE", "JOBQUEUE_URL")}
    return {
        **env,
        "ENVIRONMENT": "test",
        "REDIS_URL": redis_url,
        "QUEUE_NAME": queue_name,
        "KEY_PREFIX": "jqtest",
        "API_KEYS": API_KEY,
        "SHUTDOWN_GRACE_SECONDS": "2",
        "WORKER_COUNT": "1",
        **extra,
    }


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM, then SIGKILL if it does not exit in time; returns its exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def wait_ready(base_url: str, process: subprocess.Popen[bytes]) -> None:
    """Block until /readyz answers 200; fail if the process dies or it takes too long."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, f"API exited with {process.returncode}"
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"API at {base_url} did not become ready")


@contextmanager
def api_server(redis_url: str, queue_name: str, **extra: str) -> Iterator[str]:
    """`jobqueue api` on a free loopback port; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "jobqueue"), "api", "--host", "127.0.0.1", "--port", str(port)],
        env=service_env(redis_url, queue_name, **extra),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        yield base
    finally:
        stop_process(process)


@contextmanager
def worker(redis_url: str, queue_name: str) -> Iterator[subprocess.Popen[bytes]]:
    """A real taskiq worker process on the test queue; always terminated afterwards."""
    process = subprocess.Popen(
        ["uv", "run", "taskiq", "worker", "service.worker:broker", "--workers", "1"],
        env=service_env(redis_url, queue_name),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        stop_process(process)


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of an SSE body; comments (pings) are skipped."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events


def unique_queue() -> str:
    """A queue name no other test uses."""
    return "t-" + uuid.uuid4().hex[:12]


def delete_queue_sync(redis_url: str, queue_name: str) -> None:
    """Remove every key of a test queue (SCAN, never KEYS) from synchronous code."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match=f"jqtest:{{{queue_name}}}:*", count=1000):
            client.delete(key)
    finally:
        client.close()
