"""Job types in real worker processes: the docs example, a built-in type, a per-type timeout,
a per-type concurrency limit that holds across two worker processes, and retryable versus
permanent errors of the built-in types (email through a real local SMTP server).

One worker pool (`taskiq worker ... --workers 2`) serves every test of this module, loading the
docs example and the test-only types through JOB_MODULES, as a deployment would.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from job_test_support import MailServerHandler, encoded, quadrant_image
from redis.asyncio import Redis

from service.jobs.registry import REGISTRY
from service.queue.keys import QueueKeys
from service.queue.models import Backoff, Job
from service.queue.queue import JobQueue, QueueConfig
from service.queue.states import TERMINAL, JobState

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
EXAMPLES = REPO / "docs" / "examples"
PROCESSES = 2
# Each process runs at most this many jobs at once, so the test type's limit of 3 can only be
# reached with both processes busy: the limit is then observed across processes.
PER_PROCESS = 2


@pytest.fixture(scope="module")
def test_job_types() -> Iterator[None]:
    """The docs example and the test-only types, registered here too (to build specs), and
    unregistered afterwards so other tests see only the real registry."""
    before = dict(REGISTRY._types)  # private on purpose: nothing else removes a type
    sys.path.insert(0, str(EXAMPLES))
    try:
        importlib.import_module("word_count")
        importlib.import_module("jobtypes_under_test")
        yield
    finally:
        sys.path.remove(str(EXAMPLES))
        REGISTRY._types.clear()
        REGISTRY._types.update(before)


@pytest.fixture(scope="module")
async def pool_queue(redis_url: str) -> AsyncIterator[JobQueue]:
    """The queue the worker pool serves; its keys are removed afterwards."""
    name = "t-workers-" + uuid.uuid4().hex[:8]
    client = Redis.from_url(redis_url, decode_responses=True)
    yield JobQueue(client, QueueKeys("jqtest", name), QueueConfig())
    async for key in client.scan_iter(match=f"jqtest:{{{name}}}:*", count=1000):
        await client.delete(key)
    await client.aclose()


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[tuple[MailServerHandler, int]]:
    """A real SMTP server on localhost for the workers' email jobs."""
    handler = MailServerHandler()
    with socket.socket() as probe:  # aiosmtpd's start-up check cannot use port 0
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
async def worker_pool(
    redis_url: str,
    pool_queue: JobQueue,
    test_job_types: None,
    smtp_server: tuple[MailServerHandler, int],
    tmp_path_factory,
) -> AsyncIterator[dict[str, str]]:
    """Two worker processes on the pool queue; stopped with SIGTERM (killed if they hang)."""
    folder = tmp_path_factory.mktemp("workers")
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "QUEUE_NAME": pool_queue.keys.queue,
        "KEY_PREFIX": "jqtest",
        "JOB_MODULES": "word_count,jobtypes_under_test",
        "PYTHONPATH": os.pathsep.join([str(EXAMPLES), str(HERE), os.environ.get("PYTHONPATH", "")]),
        "WORKER_CONCURRENCY": str(PER_PROCESS),
        "ARTIFACT_DIR": str(folder / "artifacts"),
        "EMAIL_OUTBOX_DIR": str(folder / "outbox"),
        "EMAIL_BACKEND": "smtp",
        "EMAIL_FROM": "jobs@example.com",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_server[1]),
        "SMTP_STARTTLS": "false",
        "SHUTDOWN_GRACE_SECONDS": "5",
    }
    env.pop("ARTIFACT_BUCKET", None)
    command = [
        "uv", "run", "taskiq", "worker", "service.worker:broker",
        "--workers", str(PROCESSES), "--max-async-tasks", str(PER_PROCESS),
    ]  # fmt: skip
    log = (folder / "worker.log").open("wb")
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        await wait_until(lambda: live_workers(pool_queue), timeout=60, what="2 live workers")
        yield env
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def live_workers(queue: JobQueue) -> bool:
    return len(await queue.workers()) == PROCESSES


async def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def enqueue(queue: JobQueue, type_name: str, data: dict, **options) -> str:
    spec = REGISTRY.get(type_name).build_spec(data, QueueConfig(), **options)
    return (await queue.enqueue(spec)).job.id


async def finished(queue: JobQueue, job_ids: list[str], timeout: float = 60) -> list[Job]:
    """The jobs once all are terminal (bounded wait)."""
    jobs: list[Job] = []

    async def all_done() -> bool:
        nonlocal jobs
        jobs = await queue.get_many(job_ids)
        return all(job.state in TERMINAL for job in jobs)

    await wait_until(all_done, timeout, f"jobs {job_ids} to finish")
    return jobs


async def test_docs_example_job_type_runs_in_a_worker(worker_pool, pool_queue):
    text = "the cat and the hat and the bat"
    [job] = await finished(pool_queue, [await enqueue(pool_queue, "word-count", {"text": text})])
    assert job.state is JobState.COMPLETED, job.error
    assert job.result == {"words": 8, "top": [["the", 3], ["and", 2], ["cat", 1]]}
    assert (job.progress, job.progress_message) == (100, "counted")


async def test_builtin_image_job_completes_in_a_worker(worker_pool, pool_queue):
    image = base64.b64encode(encoded(quadrant_image("RGB", (120, 80)), "PNG")).decode()
    data = {"image_base64": image, "operations": [{"op": "thumbnail", "width": 30, "height": 30}]}
    [job] = await finished(pool_queue, [await enqueue(pool_queue, "image-processing", data)])
    assert job.state is JobState.COMPLETED, job.error
    assert (job.result["width"], job.result["height"]) == (30, 20)
    artifacts = Path(worker_pool["ARTIFACT_DIR"]).resolve()
    assert (
        job.result["output_uri"]
        == (artifacts / "image-processing" / job.id / "output.png").as_uri()
    )


async def test_builtin_concurrency_limits_are_published_by_workers(worker_pool, pool_queue):
    limits = await pool_queue.redis.hgetall(pool_queue.keys.type_limits)
    assert {name: int(n) for name, n in limits.items()} == {
        "image-processing": 4,
        "email-sending": 10,
        "report-generation": 4,
        "word-count": 20,
        "test-limited": 3,
    }


async def test_job_over_its_type_timeout_fails_with_a_clear_error_after_retrying(
    worker_pool, pool_queue
):
    started = time.monotonic()
    [job] = await finished(pool_queue, [await enqueue(pool_queue, "test-sleeper", {"seconds": 30})])
    assert job.state is JobState.FAILED
    assert job.error == "job exceeded its timeout of 1.0 s"
    assert (job.attempts_made, job.max_attempts) == (2, 2)
    assert time.monotonic() - started < 15  # two 1 s attempts, not two 30 s sleeps
    # The worker is still healthy: both processes live and a new job completes.
    assert await live_workers(pool_queue)
    [after] = await finished(
        pool_queue, [await enqueue(pool_queue, "test-sleeper", {"seconds": 0})]
    )
    assert after.state is JobState.COMPLETED


async def test_type_concurrency_limit_holds_across_two_worker_processes(worker_pool, pool_queue):
    ids = [await enqueue(pool_queue, "test-limited", {"seconds": 0.6}) for _ in range(9)]
    jobs = await finished(pool_queue, ids)
    assert all(job.state is JobState.COMPLETED for job in jobs), [job.error for job in jobs]
    assert most_at_once(jobs) == 3  # never more than the limit, and the limit was reached...
    assert len({job.worker_id for job in jobs}) == PROCESSES  # ...by both processes together


# Retries 0.2 s apart instead of the type's minutes, so the test sees the second attempt.
QUICK_RETRY = Backoff(type="fixed", delay_seconds=0.2, jitter=0)


async def test_a_retryable_error_is_retried_and_the_next_attempt_delivers(
    worker_pool, pool_queue, smtp_server
):
    handler, _ = smtp_server
    data = {
        "to": ["greylist@example.com"],
        "subject": "Hi {{ n }}",
        "text": "t",
        "variables": {"n": 7},
    }
    job_id = await enqueue(pool_queue, "email-sending", data, backoff=QUICK_RETRY)
    [job] = await finished(pool_queue, [job_id])
    assert job.state is JobState.COMPLETED, job.error
    assert (job.attempts_made, job.max_attempts) == (2, 5)  # the 451 cost one attempt
    [envelope] = [e for e in handler.envelopes if e.rcpt_tos == ["greylist@example.com"]]
    assert f"Message-ID: <{job_id}@example.com>" in envelope.content.decode()
    assert job.result["accepted"] == ["greylist@example.com"]


@pytest.mark.parametrize(
    ("job_type", "data", "error"),
    [
        (
            "image-processing",
            {"image_base64": base64.b64encode(b"not an image at all").decode()},
            "PermanentJobError: not a readable image",
        ),
        (
            "email-sending",
            {"to": ["reject@example.com"], "subject": "s", "text": "t"},
            "PermanentJobError: every recipient was refused: reject@example.com: 550",
        ),
    ],
    ids=["bad-image", "smtp-550"],
)
async def test_a_permanent_error_fails_the_job_at_once_without_retries(
    worker_pool, pool_queue, job_type, data, error
):
    job_id = await enqueue(pool_queue, job_type, data, backoff=QUICK_RETRY)
    [job] = await finished(pool_queue, [job_id])
    assert job.state is JobState.FAILED
    assert job.error.startswith(error), job.error
    assert job.attempts_made == 1
    assert job.max_attempts > 1  # attempts were left: it was the error's kind that stopped it


def most_at_once(jobs: list[Job]) -> int:
    """The largest number of jobs whose [started, finished] intervals overlap."""
    events = sorted(
        [(job.started_at, 1) for job in jobs] + [(job.finished_at, -1) for job in jobs],
        key=lambda event: (event[0], event[1]),  # at equal times the end comes first
    )
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak
