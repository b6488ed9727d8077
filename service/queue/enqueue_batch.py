"""Coalescing single enqueues: concurrent `kiq()` calls (and single `JobQueue.enqueue` calls,
such as concurrent HTTP requests) in one event loop share one `enqueue` script call.

Without it each call is its own round trip and its own EVALSHA, so 100 concurrent `kiq()` cost
100 round trips and 100 script invocations; joined, they cost one of each (a script call's fixed
cost, INFO memory included, is then paid once per batch). The model is the worker's
FinishBatcher (service/worker/finishing.py): nothing waits on a timer. A lone call is sent on the
next turn of the event loop; calls that arrive while a batch is in flight wait for it and go
together in the next one.

What each caller sees is what it would have seen alone:
- its own (job id, outcome, state): per-job outcomes (an idempotency key or dedupe key that led
  to an existing job) are per job in the script's reply;
- the script is all-or-nothing per call, so Redis's memory refusal (QueueFullError) refuses the
  whole batch, and every caller in it gets that error;
- a connection failure is the whole batch's too: every caller gets it, as each would have alone;
- any other error (Redis refusing the script) might be one job's doing, so the batch's jobs are
  sent again one call each, and only the job that fails alone gets its error. A script that
  errs halfway keeps what it wrote before the error (Redis does not roll back); resent, those
  jobs are found by their ids, which their callers already treat as their own.
- a caller cancelled before its batch is sent is taken out of it (nothing is enqueued for it);
  cancelled later, its job is enqueued as a single call's already-written command would be, and
  the other callers of its batch are not affected (the send runs in its own task).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from redis.exceptions import OutOfMemoryError

from service.queue.errors import (
    ConnectionPoolExhaustedError,
    QueueFullError,
    QueueUnavailableError,
)
from service.queue.models import JobSpec
from service.queue.wire import reraise_swallowed_cancel

# Jobs joined in one script call at most, as many as one bulk request may carry: one call of
# 1,000 jobs runs a few ms of Lua, during which the server serves no one else.
ENQUEUE_BATCH = 1000

# Errors that are the whole batch's, whatever its jobs: each caller gets the same one.
BATCH_WIDE = (QueueFullError, QueueUnavailableError, ConnectionPoolExhaustedError, OutOfMemoryError)


@dataclass(frozen=True)
class Enqueued:
    """One job's reply from the `enqueue` script, with the clock reading its call used."""

    job_id: str
    outcome: int
    state: str
    now_ms: int


PendingJob = tuple[str, JobSpec, str]
# (job id, spec, taskiq message) triples and their call's clock reading -> one reply per job.
RunEnqueue = Callable[[Sequence[PendingJob], int], Awaitable[list[tuple[str, int, str]]]]


class EnqueueBatcher:
    """Joins the single enqueues of one event loop into shared `enqueue` script calls."""

    def __init__(self, run_enqueue: RunEnqueue, now_ms: Callable[[], int]) -> None:
        self._run_enqueue = run_enqueue
        self._now_ms = now_ms
        self._waiting: list[tuple[PendingJob, asyncio.Future[Enqueued]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, job: PendingJob) -> Enqueued:
        """Enqueue one job, together with whatever else is waiting; its own reply or error."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A queue object outlived its event loop (tests, `asyncio.run` twice): what the
            # old loop left is gone with it.
            self._loop, self._waiting, self._flusher = loop, [], None
        future: asyncio.Future[Enqueued] = loop.create_future()
        entry = (job, future)
        self._waiting.append(entry)
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush(), name="enqueue-batcher")
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if entry in self._waiting:  # not sent yet: nothing is enqueued for this caller
                self._waiting.remove(entry)
            raise

    async def _flush(self) -> None:
        batch: list[tuple[PendingJob, asyncio.Future[Enqueued]]] = []
        try:
            while self._waiting:
                batch = self._waiting[:ENQUEUE_BATCH]
                self._waiting = self._waiting[ENQUEUE_BATCH:]
                await self._send(batch)
                reraise_swallowed_cancel()
        except BaseException:
            # Cancelled with its loop (shutdown): no caller may wait for a reply that will
            # never come.
            for _, future in [*batch, *self._waiting]:
                future.cancel()
            self._waiting = []
            raise

    async def _send(self, batch: list[tuple[PendingJob, asyncio.Future[Enqueued]]]) -> None:
        now = self._now_ms()
        try:
            replies = await self._run_enqueue([job for job, _ in batch], now)
        except BATCH_WIDE as exc:
            _settle_all(batch, exc)
            return
        except Exception as exc:
            if len(batch) == 1:
                _settle_all(batch, exc)
                return
            for entry in batch:  # find the one job the error belongs to
                await self._send([entry])
            return
        for (_, future), (job_id, outcome, state) in zip(batch, replies, strict=True):
            if not future.done():
                future.set_result(Enqueued(job_id, outcome, state, now))


def _settle_all(
    batch: list[tuple[PendingJob, asyncio.Future[Enqueued]]], error: BaseException
) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)
