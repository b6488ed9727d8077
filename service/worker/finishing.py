"""How a job's end is recorded: the finish to write from its taskiq result (`outcome_of`), and
the batcher that writes the ends of one event-loop turn in one round trip, retrying while Redis
is away."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from taskiq.message import TaskiqMessage

from service.queue.consumer import Outcome
from service.queue.errors import PermanentJobError
from service.queue.options import Backoff
from service.queue.queue import REDIS_DOWN
from service.worker.holdings import Held

log = logging.getLogger(__name__)

# Finishes sent in one pipeline at most; more wait for the next round trip.
FINISH_BATCH = 500
# A finish that Redis refuses (an error other than being unreachable) is retried this many
# times, with growing pauses, before the job is let go: its lease then lapses and it runs again
# (at-least-once). One that cannot reach Redis is retried until Redis is back (see _send).
FINISH_RETRIES = 5
# Longest pause between tries of a finish: once Redis answers again, ends land within this.
FINISH_RETRY_MAX_PAUSE_SECONDS = 1.0
# A job whose type this worker does not know (e.g. during a rolling deploy) is retried after
# this long, spending one attempt, rather than failed at once.
UNKNOWN_TYPE_RETRY_MS = 5_000


# Told how one job's finish went: its FinishStatus, or the exception that kept it unrecorded.
Recorded = Callable[[int | BaseException], None]


class FinishBatcher:
    """Collects the finishes of one event-loop turn and sends them in one round trip.

    Each finish is told its end by a plain callback, not a future of its own: a busy worker
    ends thousands of jobs a second, and a future (with the shield an awaiting job needs) per
    job cost a sixth of its time in the profile of issue 16."""

    def __init__(self, finish_many: Callable[[list[Outcome]], Awaitable[list[int]]]) -> None:
        self._finish_many = finish_many
        self._waiting: list[tuple[Outcome, Recorded]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._drained = asyncio.Event()
        self._drained.set()

    def submit_soon(self, outcome: Outcome, recorded: Recorded) -> None:
        """Finish one job in the next round trip; `recorded` is called with its FinishStatus
        once Redis has recorded it (or with the exception that stopped it)."""
        self._waiting.append((outcome, recorded))
        self._drained.clear()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def submit(self, outcome: Outcome) -> int:
        """Finish one job; resolves with its FinishStatus once Redis has recorded it. The
        finish goes on if the caller is cancelled meanwhile."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.submit_soon(outcome, functools.partial(_settle, future))
        return await asyncio.shield(future)

    async def drained(self) -> None:
        """Until every finish submitted so far is recorded or given up."""
        await self._drained.wait()

    async def _flush(self) -> None:
        try:
            while self._waiting:
                await asyncio.sleep(0)  # let the other ends of this loop turn join the batch
                batch, self._waiting = self._waiting[:FINISH_BATCH], self._waiting[FINISH_BATCH:]
                try:
                    statuses: list[int | BaseException] = list(
                        await self._send([outcome for outcome, _ in batch])
                    )
                except Exception as exc:  # handed to every job of the batch
                    statuses = [exc] * len(batch)
                for (outcome, recorded), status in zip(batch, statuses, strict=True):
                    try:
                        recorded(status)
                    except Exception:  # one job's bookkeeping must not strand the others
                        log.exception("bookkeeping of job %s's end failed", outcome.job_id)
        finally:
            if not self._waiting:
                self._drained.set()

    async def _send(self, outcomes: list[Outcome]) -> list[int]:
        """Record the ends, trying again until Redis is back. The outcomes wait in memory
        meanwhile, bounded by what the worker may hold (WorkerRuntime._room_left): jobs whose
        end is not recorded stop it taking more once a concurrency's worth of them pile up."""
        refusals = 0
        for attempt in itertools.count():
            try:
                return await self._finish_many(outcomes)
            except REDIS_DOWN as exc:
                if attempt == 0 or attempt % 30 == 0:  # a line when it starts, then now and then
                    log.warning("cannot record %d job end(s) (%s); retrying", len(outcomes), exc)
            except Exception:
                refusals += 1
                if refusals >= FINISH_RETRIES:
                    raise
                log.exception("Redis refused to record %d job end(s); retrying", len(outcomes))
            await asyncio.sleep(min(FINISH_RETRY_MAX_PAUSE_SECONDS, 0.1 * 2 ** min(attempt, 8)))
        raise AssertionError("unreachable")

    def cancel(self) -> None:
        """Stop trying to record ends (shutdown: what is still held is handed back)."""
        if self._flusher is not None:
            self._flusher.cancel()
        self._drained.set()


def _settle(future: asyncio.Future[int], status: int | BaseException) -> None:
    if future.done():  # only a shutdown abandons an awaited finish, and nobody reads it then
        return
    if isinstance(status, BaseException):
        future.set_exception(status)
    else:
        future.set_result(status)


def outcome_of(held: Held) -> Outcome:
    """The finish to record for a job, from its taskiq result, with when its code started
    (the finish records the start when no renewal did yet)."""
    job_id, started = held.delivery.job_id, held.started_ms
    result = held.result
    if result is None or held.message is None:
        return Outcome(
            job_id,
            completed=False,
            payload="no worker code ran this job: its type is not registered in this worker",
            retry_delay_ms=UNKNOWN_TYPE_RETRY_MS,
            started_ms=started,
        )
    if not result.is_err:
        try:
            payload = json.dumps(result.return_value, default=_json_default)
        except (TypeError, ValueError) as exc:
            return Outcome(
                job_id,
                completed=False,
                payload=f"result is not JSON-serializable: {exc}",
                started_ms=started,
            )
        return Outcome(job_id, completed=True, payload=payload, started_ms=started)
    return _failure(job_id, held.message, held.delivery.attempt, result.error, started)


def _failure(
    job_id: str,
    message: TaskiqMessage,
    attempt: int,
    error: BaseException | None,
    started_ms: int | None,
) -> Outcome:
    trace = "".join(traceback.format_exception(error)) if error is not None else ""
    text = f"{type(error).__name__}: {error}"
    retry_ms = -1
    if isinstance(error, TimeoutError):
        text = f"job exceeded its timeout of {message.labels.get('timeout')} s"
    if not isinstance(error, PermanentJobError | ValidationError):
        backoff = Backoff.model_validate_json(message.labels.get("backoff", "{}"))
        retry_ms = int(backoff.delay_for(attempt) * 1000)
    return Outcome(
        job_id,
        completed=False,
        payload=text,
        traceback=trace,
        retry_delay_ms=retry_ms,
        started_ms=started_ms,
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")
