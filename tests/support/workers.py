"""Real worker processes for tests: the project's own worker command in a subprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service.queue.queue import JobQueue
from service.queue.states import TERMINAL

REPO = Path(__file__).resolve().parents[2]
WORKER_COMMAND = [
    sys.executable,
    "-c",
    "import sys; from service.worker import run_workers; sys.exit(run_workers())",
]
# worker_env(..., **PROBE): a worker that runs the probe jobs (tests.support.probe_jobs).
PROBE = {"JOB_MODULES": "tests.support.probe_jobs"}


def worker_env(redis_url: str, queue_name: str, **overrides: str | int | float) -> dict[str, str]:
    """Environment for a worker on the test queue; `overrides` become upper-case variables."""
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "QUEUE_NAME": queue_name,
        "KEY_PREFIX": "jqtest",
        "ENVIRONMENT": "test",
        "PYTHONPATH": str(REPO),
        "SWEEP_INTERVAL_SECONDS": "0.5",
        "HEARTBEAT_SECONDS": "0.5",
        "HEARTBEAT_TTL_SECONDS": "3",
    }
    env.update({key.upper(): str(value) for key, value in overrides.items()})
    return env


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start `run_workers` (WORKER_COUNT processes) with its output in `log_path`."""
    with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            WORKER_COMMAND,
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_worker(process: subprocess.Popen[bytes], timeout: float = 30.0) -> float:
    """SIGTERM the worker and wait; returns seconds it took to exit (kills it past `timeout`)."""
    started = time.monotonic()
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
            raise
    return time.monotonic() - started


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker and all its children (a crash: nothing gets to clean up)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


@contextmanager
def running_worker(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A worker for the duration of the block, always stopped (then killed) afterwards."""
    process = start_worker(env, log_path)
    try:
        yield process
    finally:
        try:
            stop_worker(process)
        finally:
            kill_group(process)


async def wait_until(predicate, timeout: float, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll an async predicate until it returns something truthy; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


async def all_done(queue: JobQueue, ids: list[str]) -> bool:
    jobs = await queue.get_many(ids)
    return len(jobs) == len(ids) and all(job.state in TERMINAL for job in jobs)
