"""Worker-side queue operations: take jobs under a lease, renew, finish, hand back, sweep.

Every change is one Lua script (see lua/), so a worker killed between any two calls leaves the
queue consistent: at worst its jobs sit in `active` until their lease expires and the sweeper
returns them to pending.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from service.queue.queue import (
    SAMPLES_KEPT,
    STATS_TTL_SECONDS,
    TRIM_BATCH,
    JobQueue,
    now_ms,
)
from service.queue.scripts import ScriptArg

# A job whose worker died this many times fails instead of being handed out again: it is
# probably what kills its workers (BullMQ's maxStalledCount plays the same role).
MAX_STALLS = 3
# Each sweep step handles at most this many jobs per script call, keeping calls short.
SWEEP_BATCH = 500
# Due delayed jobs promoted per dequeue call (the sweeper promotes the rest).
PROMOTE_BATCH = 200
# `now` argument telling the dequeue script to read the server's clock.
SERVER_CLOCK = -1
# A worker's own wake-up key outlives a worker killed before it could pop it by this long only.
WAKE_TTL_MS = 60_000


@dataclass(frozen=True)
class Delivery:
    """A job handed to this worker: its id, taskiq message, attempt number and wait start."""

    job_id: str
    message: str
    attempt: int
    pending_since_ms: int


@dataclass(frozen=True)
class JobStart:
    """When the code of one attempt of a held job started (sent with the next renewal)."""

    job_id: str
    attempt: int
    started_ms: int


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended. `retry_delay_ms` < 0 means the failure must not be retried."""

    job_id: str
    completed: bool
    payload: str  # result JSON when completed, else the error message
    traceback: str = ""
    retry_delay_ms: int = -1
    started_ms: int | None = None  # when its code started (None: none ran)


class FinishStatus:
    """What the finish script did (its integer reply)."""

    STALE = 0
    COMPLETED = 1
    RETRY_SCHEDULED = 2
    FAILED = 3


@dataclass(frozen=True)
class SweepReport:
    """What one sweep did."""

    requeued: int = 0
    failed_stalled: int = 0
    promoted: int = 0
    expired: int = 0
    workers_dropped: int = 0


def new_worker_id() -> str:
    """host-pid-random: unique per process, readable in the worker list."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


class Consumer:
    """One worker process's handle on the queue."""

    def __init__(self, queue: JobQueue, worker_id: str, lease_seconds: float) -> None:
        self.queue = queue
        self.keys = queue.keys
        self.scripts = queue.scripts
        self.redis = queue.redis
        self.worker_id = worker_id
        self.lease_ms = int(lease_seconds * 1000)
        self.wake_key = self.keys.worker_wake(worker_id)

    def _now(self) -> int:
        return now_ms(self.queue.clock)

    async def dequeue(self, max_jobs: int) -> tuple[list[Delivery], int | None]:
        """Take up to `max_jobs` of the best due jobs; also returns the next delayed due ms."""
        reply = await self.scripts.run("dequeue", self._dequeue_args(max_jobs))
        return _deliveries(reply)

    async def wait_and_dequeue(
        self, max_jobs: int, timeout: float
    ) -> tuple[list[Delivery], int | None]:
        """Block (no polling) until a producer marks new work, `wake()` is called or `timeout`
        seconds pass, then take jobs as `dequeue` does, in the same round trip.

        The dequeue call is pipelined behind the blocking pop on one connection, so the server
        runs it the moment the pop returns: a woken worker spends no second round trip before
        its job starts. It runs on the server's clock, since it is sent before the wait.
        """
        pipe = self.redis.pipeline(transaction=False)
        # BZPOPMIN treats 0 as "forever"; never block unbounded, so shutdown is noticed.
        pipe.bzpopmin([self.keys.marker, self.wake_key], timeout=max(timeout, 0.01))
        args = self._dequeue_args(max_jobs, now=SERVER_CLOCK)
        self.scripts.add_to(pipe, "dequeue", args)
        popped, reply = await pipe.execute(raise_on_error=False)
        if isinstance(popped, Exception):
            raise popped
        return _deliveries(await self.scripts.settle(reply, "dequeue", args))

    async def wake(self) -> None:
        """End this worker's own blocking wait (`wait_and_dequeue`) now; others sleep on."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(self.wake_key, {"0": 0})
        pipe.pexpire(self.wake_key, WAKE_TTL_MS)
        await pipe.execute()

    def _dequeue_args(self, max_jobs: int, now: int | None = None) -> dict[str, ScriptArg]:
        return {
            "now_ms": self._now() if now is None else now,
            "lease_ms": self.lease_ms,
            "worker_id": self.worker_id,
            "max_jobs": max_jobs,
            "promote_limit": PROMOTE_BATCH,
        }

    async def wait_for_work(self, timeout: float) -> None:
        """Block (no polling) until a producer marks new work or `timeout` seconds pass."""
        # BZPOPMIN treats 0 as "forever"; never block unbounded, so shutdown is noticed.
        await self.redis.bzpopmin(self.keys.marker, timeout=max(timeout, 0.01))

    async def pending_count(self) -> int:
        """Due jobs waiting to be taken (the stall detector's check, off the hot path)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self.keys.pending)
        pipe.zcard(self.keys.groups_ready)  # a group there has a job that may start now
        ungrouped, ready_groups = await pipe.execute()
        return int(ungrouped) + int(ready_groups)

    async def finish_many(self, outcomes: Sequence[Outcome]) -> list[int]:
        """Record many attempts' ends in one script call; a FinishStatus per outcome."""
        if not outcomes:
            return []
        now = self._now()
        args: dict[str, ScriptArg] = {
            "worker_id": self.worker_id, "now_ms": now, "trim_limit": TRIM_BATCH,
            "stats_ttl_s": STATS_TTL_SECONDS, "samples_kept": SAMPLES_KEPT,
        }  # fmt: skip
        per_job: list[ScriptArg] = []
        for outcome in outcomes:
            per_job += [
                outcome.job_id,
                "completed" if outcome.completed else "failed",
                outcome.payload,
                outcome.traceback,
                outcome.retry_delay_ms,
                "" if outcome.started_ms is None else outcome.started_ms,
            ]
        stats_minute = self.keys.stats_minute(now // 60_000)
        replies = await self.scripts.run(
            "finish", args, per_job, keys={"stats_minute": stats_minute}
        )
        return [int(reply) for reply in replies]

    async def renew(self, job_ids: Sequence[str], starts: Sequence[JobStart] = ()) -> list[str]:
        """Extend the leases of `job_ids` and record `starts` (jobs whose code started since the
        last renewal); returns the jobs this worker no longer holds."""
        if not job_ids and not starts:
            return []
        deadline = self._now() + self.lease_ms
        more: list[ScriptArg] = []
        for start in starts:
            more += [start.job_id, start.attempt, start.started_ms]
        args: dict[str, ScriptArg] = {
            "worker_id": self.worker_id, "deadline_ms": deadline, "starts": len(starts)
        }  # fmt: skip
        lost: list[str] = await self.scripts.run("renew", args, [*more, *job_ids])
        return lost

    async def release(self, job_ids: Sequence[str]) -> int:
        """Hand unfinished jobs back to pending (shutdown); returns how many were still ours."""
        if not job_ids:
            return 0
        released: int = await self.scripts.run(
            "release", {"worker_id": self.worker_id, "now_ms": self._now()}, job_ids
        )
        return released

    async def progress(self, job_id: str, percent: float, message: str) -> bool:
        """Store and publish progress; False when the job is no longer this worker's."""
        args: dict[str, ScriptArg] = {
            "job_id": job_id, "worker_id": self.worker_id, "percent": percent,
            "message": message, "now_ms": self._now(),
        }  # fmt: skip
        reply = await self.scripts.run("progress", args)
        return bool(reply)

    async def log(self, job_id: str, line: str) -> int:
        """Append a log line to the job (the oldest lines beyond the cap are dropped) and
        publish it; returns its number (1 for the first), 0 when the job is gone."""
        args: dict[str, ScriptArg] = {
            "line": line, "lines_kept": self.queue.config.max_log_lines, "job_id": job_id
        }  # fmt: skip
        index: int = await self.scripts.run(
            "log", args, keys={"job": self.keys.job(job_id), "logs": self.keys.logs(job_id)}
        )
        return index

    async def sweep(self, lock_ms: int, worker_ttl_ms: int) -> SweepReport | None:
        """Run the sweeper if no other worker did within `lock_ms`; None when skipped."""
        acquired = await self.redis.set(self.keys.sweep_lock, self.worker_id, nx=True, px=lock_ms)
        if not acquired:
            return None
        total = SweepReport()
        for _ in range(20):  # bounded: a huge backlog is finished by the next sweeps
            step = await self._sweep_once(worker_ttl_ms)
            total = SweepReport(
                *(a + b for a, b in zip(_fields(total), _fields(step), strict=True))
            )
            if max(_fields(step)) < SWEEP_BATCH:
                break
        return total

    async def _sweep_once(self, worker_ttl_ms: int) -> SweepReport:
        now = self._now()
        args: dict[str, ScriptArg] = {
            "now_ms": now, "limit": SWEEP_BATCH, "max_stalls": MAX_STALLS,
            "worker_ttl_ms": worker_ttl_ms, "stats_ttl_s": STATS_TTL_SECONDS,
        }  # fmt: skip
        stats_minute = self.keys.stats_minute(now // 60_000)
        reply = await self.scripts.run("sweep", args, keys={"stats_minute": stats_minute})
        return SweepReport(*(int(value) for value in reply))

    async def heartbeat(
        self, info: dict[str, str | int], current_jobs: Sequence[str], ttl_ms: int
    ) -> None:
        """Publish this worker's liveness and state; it drops out `ttl_ms` after the last one."""
        now = self._now()
        key = self.keys.worker(self.worker_id)
        pipe = self.redis.pipeline(transaction=True)
        fields: dict[str | bytes, str | int] = {key: value for key, value in info.items()}
        fields.update(heartbeat=now, jobs=json.dumps(list(current_jobs)))
        pipe.hset(key, mapping=fields)  # type: ignore[arg-type]  # redis-py's mapping is invariant
        pipe.pexpire(key, ttl_ms)
        pipe.zadd(self.keys.workers, {self.worker_id: now})
        await pipe.execute()

    async def deregister(self) -> None:
        """Leave the worker registry at once (clean shutdown)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.keys.worker(self.worker_id), self.wake_key)
        pipe.zrem(self.keys.workers, self.worker_id)
        await pipe.execute()


def _deliveries(reply: list[Any]) -> tuple[list[Delivery], int | None]:
    """The dequeue script's reply: the jobs taken, and the next delayed due ms (if any)."""
    next_due = int(reply[0])
    deliveries = [
        Delivery(reply[i], reply[i + 1], int(reply[i + 2]), int(reply[i + 3]))
        for i in range(1, len(reply), 4)
    ]
    return deliveries, (None if next_due < 0 else next_due)


def _fields(report: SweepReport) -> tuple[int, ...]:
    return (
        report.requeued,
        report.failed_stalled,
        report.promoted,
        report.expired,
        report.workers_dropped,
    )
