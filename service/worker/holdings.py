"""What one worker holds: every job it took from the queue and has not let go, each in one
explicit state, and the buffer of those not yet handed to the dispatcher.

The lease keeper renews every held job whatever its state; the room the worker has left, the
jobs it reports as running and what a cancel must do all follow from the states here.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from taskiq.message import TaskiqMessage
from taskiq.result import TaskiqResult

from service.queue.consumer import Delivery, JobStart


class HeldState(enum.Enum):
    """Where a held job is in this worker; a job moves only forward through these."""

    BUFFERED = "buffered"  # dequeued, waiting in the buffer for `take`
    HANDED_OUT = "handed_out"  # taken by the dispatcher; its code has not started yet
    RUNNING = "running"  # its code runs in `task` (a cancel cancels that task)
    ENDING = "ending"  # its code returned or raised; its end is being recorded


# A job in these states has started its code: it counts as processing, the others as reserved.
STARTED = frozenset({HeldState.RUNNING, HeldState.ENDING})


@dataclass
class Held:
    """A job this worker took, with what it knows of its run so far."""

    delivery: Delivery
    state: HeldState = HeldState.BUFFERED
    message: TaskiqMessage | None = None
    task: asyncio.Task[Any] | None = None
    result: TaskiqResult[Any] | None = None
    started_ms: int | None = None  # when its code started (sent with a renewal or its finish)


class Holdings:
    """The held jobs by id, and the buffered ones in the order they were dequeued."""

    def __init__(self) -> None:
        self._jobs: dict[str, Held] = {}
        self._buffer: deque[Delivery] = deque()
        # Starts the lease keeper has not sent yet, by job id. Written on the event loop, read
        # and trimmed on the lease keeper's thread: single dict operations, atomic under the GIL.
        self._unsent_starts: dict[str, JobStart] = {}

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[str]:
        return iter(self._jobs)

    def get(self, job_id: str) -> Held | None:
        """The held job `job_id`, or None when this worker does not hold it."""
        return self._jobs.get(job_id)

    def values(self) -> Iterator[Held]:
        """Every held job."""
        return iter(self._jobs.values())

    def ids_now(self) -> list[str]:
        """The held jobs' ids, safe to read from the lease keeper's thread: dict.copy() runs in
        C under the GIL with no Python code in between (the keys are str), so it never sees the
        dict mid-change, even while the event loop thread changes it."""
        return list(self._jobs.copy())

    def ids_in(self, state: HeldState) -> list[str]:
        """The held jobs in `state`."""
        return [job_id for job_id, held in self._jobs.items() if held.state is state]

    def count(self, state: HeldState) -> int:
        """How many held jobs are in `state`."""
        return sum(1 for held in self._jobs.values() if held.state is state)

    def starts_now(self) -> list[JobStart]:
        """Starts not yet sent, safe to read from the lease keeper's thread (as `ids_now`)."""
        return list(self._unsent_starts.copy().values())

    def starts_sent(self, starts: list[JobStart]) -> None:
        """These starts are recorded in Redis (called on the lease keeper's thread)."""
        for start in starts:
            # Only that attempt's: a new attempt of the job may have started meanwhile.
            if self._unsent_starts.get(start.job_id) == start:
                self._unsent_starts.pop(start.job_id, None)

    def started_and_reserved(self) -> tuple[int, int]:
        """Held jobs whose code has started (running or ending), and those not started yet
        (buffered or handed out): what the heartbeat reports as running and reserved."""
        started = sum(1 for held in self._jobs.values() if held.state in STARTED)
        return started, len(self._jobs) - started

    def started_by_type(self) -> dict[str, int]:
        """Held jobs whose code has started, per job type (the heartbeat's `running_types`)."""
        by_type: dict[str, int] = {}
        for held in self._jobs.values():
            if held.state in STARTED and held.message is not None:
                name = held.message.task_name
                by_type[name] = by_type.get(name, 0) + 1
        return by_type

    @property
    def buffered(self) -> int:
        """Jobs dequeued and not yet handed out by `take`."""
        return len(self._buffer)

    def hold(self, jobs: list[Delivery]) -> None:
        """Jobs just dequeued: held, and buffered until taken."""
        for delivery in jobs:
            self._jobs[delivery.job_id] = Held(delivery)
            self._unsent_starts.pop(delivery.job_id, None)
        self._buffer.extend(jobs)

    def take(self, max_jobs: int) -> list[Delivery]:
        """Up to `max_jobs` buffered jobs, oldest first, now handed out."""
        taken = [self._buffer.popleft() for _ in range(min(max_jobs, len(self._buffer)))]
        for delivery in taken:
            self._jobs[delivery.job_id].state = HeldState.HANDED_OUT
        return taken

    def started(
        self,
        job_id: str,
        message: TaskiqMessage,
        task: asyncio.Task[Any] | None,
        started_ms: int,
    ) -> Held:
        """The job's code starts in `task` at `started_ms`; the caller checked that the job is
        held. The start goes to Redis with the next renewal (or the job's finish)."""
        held = self._jobs[job_id]
        held.message, held.task, held.state = message, task, HeldState.RUNNING
        held.started_ms = started_ms
        self._unsent_starts[job_id] = JobStart(job_id, held.delivery.attempt, started_ms)
        return held

    def ended(self, job_id: str, result: TaskiqResult[Any]) -> None:
        """The job's code returned or raised (a job no longer held is ignored)."""
        held = self._jobs.get(job_id)
        if held is not None:
            held.state, held.result = HeldState.ENDING, result

    def unbuffer(self, held: Held) -> None:
        """A buffered job leaves the buffer before it was handed out (dropped)."""
        self._buffer.remove(held.delivery)

    def release(self, held: Held) -> None:
        """The worker no longer holds this attempt of the job.

        By attempt, not by id: a retry with no backoff can be dequeued again, here, while the
        failed attempt's end is still being written, and letting go of that attempt must not
        drop the new one (its ack would find nothing, and it would sit until its lease lapsed).
        """
        if self._jobs.get(held.delivery.job_id) is held:
            del self._jobs[held.delivery.job_id]
            self._unsent_starts.pop(held.delivery.job_id, None)
