"""A template that loops without output cannot keep a core busy after its deadline or its job's
timeout: rendering runs in a child process that is killed then."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from service.jobs.email_sending import EmailPayload, render_isolated
from service.queue.errors import PermanentJobError
from service.queue.models import JobSpec
from service.queue.queue import JobQueue
from service.queue.states import JobState
from tests.faults.cpu import tree_cpu_seconds
from tests.support.workers import running_worker, wait_until, worker_env

pytestmark = pytest.mark.slow

# Nested loops with empty bodies: no output, so nothing for an output check to stop at.
SILENT_LOOPS = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}done"
CPU_WINDOW_SECONDS = 2.0
# An idle worker heartbeats and waits on Redis: a few ms of CPU per second. A runaway render
# thread takes most of a core even when three test runs share two cores.
IDLE_CPU_SHARE = 0.2


def _payload() -> EmailPayload:
    return EmailPayload(to=["a@example.com"], subject="s", text=SILENT_LOOPS)


async def _cpu_over_window(pid: int) -> float:
    before = tree_cpu_seconds(pid)
    await asyncio.sleep(CPU_WINDOW_SECONDS)
    return tree_cpu_seconds(pid) - before


async def test_a_render_past_its_deadline_is_stopped_and_frees_the_cpu() -> None:
    started = time.monotonic()
    with pytest.raises(PermanentJobError, match=r"still rendering after 0\.5 s"):
        await render_isolated(_payload(), deadline_seconds=0.5)
    assert time.monotonic() - started < 5
    assert await _cpu_over_window(os.getpid()) < CPU_WINDOW_SECONDS * IDLE_CPU_SHARE


async def test_a_cancelled_render_is_stopped_too() -> None:
    render = asyncio.ensure_future(render_isolated(_payload(), deadline_seconds=60))
    await asyncio.sleep(0.5)
    render.cancel()
    with pytest.raises(asyncio.CancelledError):
        await render
    assert await _cpu_over_window(os.getpid()) < CPU_WINDOW_SECONDS * IDLE_CPU_SHARE


async def test_a_worker_is_idle_again_once_the_email_job_timed_out(
    queue: JobQueue, redis_url: str, tmp_path: Path
) -> None:
    data = {"to": ["a@example.com"], "subject": "s", "text": SILENT_LOOPS}
    spec = JobSpec(type="email-sending", data=data, attempts=1, timeout_seconds=2)
    job = (await queue.enqueue(spec)).job
    env = worker_env(redis_url, queue.keys.queue, email_outbox_dir=tmp_path / "outbox")
    with running_worker(env, tmp_path / "worker.log") as worker:

        async def failed() -> bool:
            return (await queue.get(job.id)).state is JobState.FAILED

        await wait_until(failed, timeout=60)
        cpu = await _cpu_over_window(worker.pid)
        # Asserted before the worker is stopped: a runaway render thread also hangs shutdown.
        assert cpu < CPU_WINDOW_SECONDS * IDLE_CPU_SHARE, f"{cpu:.2f} s of CPU after the timeout"
    assert "timeout" in ((await queue.get(job.id)).error or "").lower()
