"""One worker process's life on the queue: what it holds, and the loops that keep it honest.

- deliveries(): takes jobs (batched up to free capacity) and blocks on the wake-up marker when
  idle, never polling;
- ack(): turns a taskiq result into the job's end (completed, retry after backoff, failed),
  batching the finish scripts of jobs that end together into one round trip;
- loops: lease renewal on a thread of its own (lease_keeper.py; also notices jobs taken away),
  cancel signals, heartbeat (worker registry, ECS scale-in protection, stall detector), the
  container health record, and the sweeper;
- stop(): hands every job it still holds back to pending.

Whoever waits to take more (the receiver's dispatcher, or `deliveries`) waits on one event,
`room_may_have_freed`, which every event that can free room sets: a job's code ended, its end
was recorded, it was dropped (cancelled, lease lost), shutdown. docs/queue.md lists every wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from taskiq.message import TaskiqMessage
from taskiq.result import TaskiqResult

from service import healthcheck
from service.logs import one_line
from service.queue.consumer import Consumer, Delivery, FinishStatus, Outcome, new_worker_id
from service.queue.job_context import JobContext, current_job
from service.queue.queue import JobQueue, now_ms
from service.queue.schedules import ScheduleTicker
from service.queue.wire import cancel_and_wait
from service.settings import Settings
from service.worker.background import every, quietly
from service.worker.cancels import listen_for_cancels
from service.worker.finishing import FinishBatcher, outcome_of
from service.worker.holdings import Held, HeldState, Holdings
from service.worker.lease_keeper import LeaseKeeper
from service.worker.protection import ProtectionSwitch, ScaleInProtection
from service.worker.stalls import Capacity, StallDetector

log = logging.getLogger(__name__)

# A container health record holds for this many lease-renewal cycles (the lease keeper writes
# it): one late write (a slow disk, a Redis call near its timeout) is not a failed check.
HEALTH_FRESH_CYCLES = 3

__all__ = ["Dispatcher", "FinishBatcher", "ScaleInProtection", "WorkerRuntime", "WorkerStats"]


@dataclass
class WorkerStats:
    """Counters published with the heartbeat."""

    processed: int = 0
    failed: int = 0
    started_ms: int = field(default_factory=lambda: 0)


class Dispatcher(Protocol):
    """What takes jobs from the runtime and starts them (the receiver's dispatch loop)."""

    def free_slots(self) -> int:
        """Jobs it may start now."""

    def restart(self) -> None:
        """Abandon whatever it waits on and begin its loop again (stall detector)."""


class WorkerRuntime:
    """The queue side of one worker process."""

    def __init__(
        self,
        queue: JobQueue,
        settings: Settings,
        protection: ScaleInProtection | None = None,
    ) -> None:
        self.settings = settings
        self.consumer = Consumer(queue, new_worker_id(), settings.lease_seconds)
        self.worker_id = self.consumer.worker_id
        self.concurrency = settings.worker_concurrency
        self.held = Holdings()
        self._next_due_ms: int | None = None  # of the earliest delayed job, from dequeue
        self._protection = ProtectionSwitch(protection, busy=lambda: bool(self.held))
        self._batcher = FinishBatcher(self.consumer.finish_many)
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        # The one wake-up for "I may take more now" (see room_may_have_freed).
        self._room_may_have_freed = asyncio.Event()
        self.dispatcher: Dispatcher | None = None  # set by the receiver while it dispatches
        self._delivering = False  # `deliveries` (taskiq's stock receiver) is being iterated
        self._takes_in_flight = 0
        self._last_progress = time.monotonic()  # a take attempt ended or jobs were started
        self.stall_detector = StallDetector(settings.worker_stall_seconds)
        # When the event loop last ran its health step (read by the lease keeper's thread).
        self._loop_turned_at = time.monotonic()
        self._keeper = LeaseKeeper(
            settings,
            queue,
            self.worker_id,
            self.held.ids_now,
            on_lost=self._lost_from_thread,
            on_cycle=self._record_health,
            starts=self.held.starts_now,
            on_starts_sent=self.held.starts_sent,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stats = WorkerStats(started_ms=now_ms(queue.clock))

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Register the worker and start its background loops."""
        self._loop = asyncio.get_running_loop()
        await self._heartbeat()
        self._record_health()
        self._keeper.start()
        s = self.settings
        # Each loop sleeps its interval between steps (woken by nothing else; stop() cancels it).
        self._loops = [
            asyncio.create_task(every(s.heartbeat_seconds, self._heartbeat)),
            asyncio.create_task(every(s.heartbeat_seconds, self._health_step)),
            asyncio.create_task(every(s.sweep_interval_seconds, self._sweep)),
            asyncio.create_task(listen_for_cancels(self.consumer, self._drop)),
            # Fires due schedule ticks; its wait is the next tick or TICKER_POLL_SECONDS.
            asyncio.create_task(ScheduleTicker(self.consumer.queue).run()),
        ]
        log.info("worker %s started (concurrency %d)", self.worker_id, self.concurrency)

    async def shutdown_signalled(self) -> None:
        """A shutdown signal stopped the taking of jobs: the task is being stopped, so its ECS
        scale-in protection is released now rather than after the running jobs drain (a
        deployment waits on a protected task until its protection lapses)."""
        await self._protection.release()

    async def stop(self) -> None:
        """Hand back every job still held, stop the loops, leave the registry. Idempotent."""
        self._stopping.set()
        self.room_may_have_freed()
        self._keeper.stop()
        self._batcher.cancel()
        unfinished = list(self.held)
        if unfinished:
            released = await quietly(self.consumer.release(unfinished), "hand back jobs")
            log.info("handed %s unfinished job(s) back to pending", released)
        for held in self.held.values():
            if held.state is HeldState.RUNNING and held.task is not None:
                held.task.cancel()
        await cancel_and_wait(self._loops)
        self._loops = []
        await quietly(self.consumer.deregister(), "leave the worker registry")
        await self._protection.close()

    # --- taking jobs ---------------------------------------------------------------------------

    async def deliveries(self) -> AsyncIterator[Delivery]:
        """Jobs for this worker, one at a time, as capacity frees up (taskiq's stock receiver
        through `JobQueueBroker.listen`); waits without polling when idle."""
        self._delivering = True
        try:
            while not self._stopping.is_set():
                self.expect_room()
                batch = self.take(1)
                if batch:
                    yield batch[0]
                    continue
                taken = await self.refill()
                if taken is None:
                    # The receiver may allow more tasks than WORKER_CONCURRENCY (plain `taskiq
                    # worker` defaults to 100): this worker's own limit still holds. Woken by
                    # room_may_have_freed (armed above, before anything could free room).
                    await self.wait_for_room()
                elif not taken:
                    await self.wait_for_work()
        finally:
            self._delivering = False

    def room_may_have_freed(self) -> None:
        """Wake whoever waits to take more. Every event that can free room calls this: a job's
        code ended, its end was recorded, it was dropped (cancelled or its lease lost), or the
        worker is stopping, and the stall detector as a last resort."""
        self._room_may_have_freed.set()

    def expect_room(self) -> None:
        """Arm the wake-up before looking at what the worker holds: an event from now on, even
        one during the awaits that follow, ends the next `wait_for_room` at once. (Arming it
        after an await would lose the events that came during it: issue 19.)"""
        self._room_may_have_freed.clear()

    async def wait_for_room(self) -> None:
        """Until room_may_have_freed() is called (since the last expect_room)."""
        await self._room_may_have_freed.wait()

    @property
    def buffered(self) -> int:
        """Jobs dequeued and not yet handed out by `take`."""
        return self.held.buffered

    def take(self, max_jobs: int) -> list[Delivery]:
        """Up to `max_jobs` already dequeued jobs, oldest first; no I/O."""
        taken = self.held.take(max_jobs)
        if taken:
            self._last_progress = time.monotonic()
        return taken

    async def refill(self) -> int | None:
        """Dequeue as many jobs as this worker has room for into the buffer. Returns how many
        (0: nothing due, so wait for work), or None when it holds all it may (wait for room)."""
        room = self._room_left()
        if room <= 0:
            return None
        self._takes_in_flight += 1
        try:
            return self._hold(*await self.consumer.dequeue(room))
        finally:
            self._take_ended()

    async def wait_and_refill(self) -> int:
        """Wait for work as `wait_for_work` does and take it in the same round trip (see
        `Consumer.wait_and_dequeue`); returns how many jobs were taken. `wake()` ends the wait.
        Only for an idle worker's caller that will not cancel it: a cancelled call may leave
        the jobs it took leased to this worker until their lease expires."""
        room = self._room_left()
        timeout = self._idle_timeout()
        if room <= 0 or timeout <= 0:
            return await self.refill() or 0
        self._takes_in_flight += 1
        try:
            return self._hold(*await self.consumer.wait_and_dequeue(room, timeout))
        finally:
            self._take_ended()

    def _take_ended(self) -> None:
        self._takes_in_flight -= 1
        self._last_progress = time.monotonic()

    async def wake(self) -> None:
        """End this worker's own `wait_and_refill` now (shutdown)."""
        await quietly(self.consumer.wake(), "wake the worker's own wait")

    def _room_left(self) -> int:
        """Jobs this worker may still take: its concurrency plus prefetch, less what it holds.

        Up to a concurrency's worth of jobs whose code has ended but whose end is still being
        written take no room: otherwise every finish round trip would stall the worker with
        nothing to run (measured: a third of the worker's time idle at 100 concurrent no-ops).
        """
        ending = self.held.count(HeldState.ENDING)
        return (
            self.concurrency
            + self.settings.prefetch
            - len(self.held)
            + min(ending, self.concurrency)
        )

    def _hold(self, jobs: list[Delivery], next_due_ms: int | None) -> int:
        self._next_due_ms = next_due_ms
        self.held.hold(jobs)
        if jobs:
            self._protection.took_work()
        return len(jobs)

    async def wait_for_work(self) -> None:
        """Block on the wake-up marker (no polling) until a producer marks work, the next
        delayed job is due, or the idle timeout passes."""
        timeout = self._idle_timeout()
        if timeout > 0:
            await self.consumer.wait_for_work(timeout)

    def _idle_timeout(self) -> float:
        """Seconds an idle worker blocks: until the next delayed job is due, at most
        IDLE_BLOCK_SECONDS."""
        timeout = self.settings.idle_block_seconds
        if self._next_due_ms is not None:
            timeout = min(timeout, (self._next_due_ms - now_ms(self.consumer.queue.clock)) / 1000)
        return timeout

    # --- running jobs (called by the taskiq middleware and ack) ----------------------------------

    def on_start(self, message: TaskiqMessage) -> None:
        """The job's task is about to run: remember it (for cancel) and give it its context."""
        if self.held.get(message.task_id) is None:
            return
        held = self.held.started(
            message.task_id, message, asyncio.current_task(), now_ms(self.consumer.queue.clock)
        )
        current_job.set(
            JobContext(
                job_id=message.task_id,
                job_type=message.task_name,
                attempt=held.delivery.attempt,
                max_attempts=int(message.labels.get("max_attempts", 1)),
                consumer=self.consumer,
            )
        )

    def on_result(self, job_id: str, result: TaskiqResult[Any]) -> None:
        """The job's function returned or raised."""
        self.held.ended(job_id, result)

    async def ack(self, job_id: str) -> None:
        """Record how the job ended (the taskiq ack of its message); returns once recorded."""
        held = self.held.get(job_id)
        if held is None:
            return
        outcome = outcome_of(held)
        try:
            status: int | BaseException = await self._batcher.submit(outcome)
        except Exception as exc:
            status = exc
        self._recorded(held, outcome, status)

    def finish_soon(self, job_id: str) -> None:
        """Record how the job ended, in the next finish round trip, without waiting for it
        (the receiver's fast path; `finishes_recorded` waits for all of them at shutdown)."""
        held = self.held.get(job_id)
        if held is None:
            return
        outcome = outcome_of(held)
        self._batcher.submit_soon(outcome, functools.partial(self._recorded, held, outcome))

    async def finishes_recorded(self) -> None:
        """Until every end submitted so far is recorded (or given up)."""
        await self._batcher.drained()

    def _recorded(self, held: Held, outcome: Outcome, status: int | BaseException) -> None:
        """The finish script answered for `held` (or could not be run at all)."""
        job_id = held.delivery.job_id
        if isinstance(status, BaseException):
            # Never keep a job whose end could not be written: renewing it would keep it
            # `processing` for good. Let go, its lease lapses and the sweeper re-runs it.
            log.error(
                "could not record how job %s ended; letting it go, it runs again once its "
                "lease expires",
                job_id,
                exc_info=status,
            )
            self._let_go(held)
            return
        self._let_go(held)
        if status == FinishStatus.COMPLETED:
            self.stats.processed += 1
        elif status in (FinishStatus.FAILED, FinishStatus.RETRY_SCHEDULED):
            self.stats.failed += 1
            # One line; the traceback is on the job (service.logs drops taskiq's copy).
            message = held.message
            log.warning(
                "job failed: type=%s id=%s attempt=%d/%s error=%s",
                message.task_name if message else "?",
                job_id,
                held.delivery.attempt,
                message.labels.get("max_attempts", "?") if message else "?",
                one_line(outcome.payload),
            )
        elif status == FinishStatus.STALE:
            log.info("job %s was cancelled or re-assigned while running; result dropped", job_id)

    # --- background loops ----------------------------------------------------------------------

    def _lost_from_thread(self, job_ids: list[str]) -> None:
        """The lease keeper found jobs this worker no longer holds: stop them on the loop."""
        if self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: the process is ending
            self._loop.call_soon_threadsafe(self._drop_all, job_ids)

    def _drop_all(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            self._drop(job_id)

    def begin_shutdown_deadline(self, seconds: float) -> None:
        """A shutdown signal arrived: if the process has not stopped within `seconds` (a job's
        code holds the event loop), the lease keeper hands jobs back and ends it."""
        self._keeper.begin_deadline(seconds)

    def _drop(self, job_id: str) -> None:
        """Stop a job this worker no longer owns (cancelled, or its lease was lost)."""
        held = self.held.get(job_id)
        if held is None:
            return
        if held.state is HeldState.RUNNING and held.task is not None:
            log.info("stopping job %s: cancelled or no longer held by this worker", job_id)
            held.task.cancel()
        elif held.state is HeldState.BUFFERED:
            self.held.unbuffer(held)
            self._let_go(held)

    def _let_go(self, held: Held) -> None:
        self.held.release(held)
        self.room_may_have_freed()

    async def _heartbeat(self) -> None:
        stalled = await self._detect_stall()
        running = self.held.ids_in(HeldState.RUNNING)
        started, reserved = self.held.started_and_reserved()
        info: dict[str, str | int] = {
            "id": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": self.stats.started_ms,
            "processed": self.stats.processed,
            "failed": self.stats.failed,
            "concurrency": self.concurrency,
            # The queue's "processing" is the sum of `running` over live workers; the rest of
            # its leased jobs are "reserved" (prefetched). Counted here, so no job pays for it.
            "running": started,
            "reserved": reserved,
            "running_types": json.dumps(self.held.started_by_type()),  # by_type's split
            "stalled": "1" if stalled else "0",
            "stalls": self.stall_detector.stalls,
        }
        ttl_ms = int(self.settings.heartbeat_ttl_seconds * 1000)
        await self.consumer.heartbeat(info, running, ttl_ms)
        await self._protection.update()

    def capacity(self) -> Capacity:
        """What this worker holds and could do now (the stall detector's view)."""
        if self.dispatcher is not None:
            free = self.dispatcher.free_slots()
        else:
            free = self.concurrency - self.held.count(HeldState.RUNNING)
        return Capacity(
            held=len(self.held),
            ending=self.held.count(HeldState.ENDING),
            buffered=self.held.buffered,
            room=self._room_left(),
            free_slots=free,
            taking=self._takes_in_flight > 0,
            quiet_seconds=time.monotonic() - self._last_progress,
        )

    async def _detect_stall(self) -> bool:
        """Whether the worker could take jobs, due ones are pending, and it has taken none for
        WORKER_STALL_SECONDS; if so, restart the dispatch loop. Reads Redis only when the
        worker already looks stalled, so a healthy worker pays nothing for it."""
        detector = self.stall_detector
        dispatching = self.dispatcher is not None or self._delivering
        if self._stopping.is_set() or not dispatching or not detector.suspects(self.capacity()):
            detector.clear()
            return False
        pending = await self.consumer.pending_count()
        capacity = self.capacity()  # again: the round trip gave it time to move on
        if not detector.suspects(capacity) or (capacity.buffered == 0 and pending == 0):
            detector.clear()
            return False
        detector.found_stalled(capacity)
        if self.dispatcher is not None:
            self.dispatcher.restart()
        self.room_may_have_freed()
        return True

    async def _health_step(self) -> None:
        self._loop_turned_at = time.monotonic()

    def _record_health(self) -> None:
        """This process's container health record (service.healthcheck), written at start and
        then by the lease keeper's thread before each renewal, so a job's code holding the
        event loop does not make the record stale (ECS would replace the task and the job run
        twice). No Redis I/O comes first: the container check must not fail a whole fleet
        for a Redis fault that replacing it cannot fix. Unhealthy when the stall detector's
        restarts do not heal it, or when the loop has been held past its limit."""
        detector = self.stall_detector
        healthy, detail = detector.healthy, detector.detail()
        held_for = time.monotonic() - self._loop_turned_at
        limit = self.settings.worker_loop_hold_limit_seconds
        if held_for > limit + self.settings.heartbeat_seconds:
            healthy = False
            detail = (
                f"job code has held its event loop for {held_for:.0f} s "
                f"(WORKER_LOOP_HOLD_LIMIT_SECONDS={limit:g})"
            )
        fresh_for = HEALTH_FRESH_CYCLES * self.settings.renew_interval
        healthcheck.record("worker", fresh_for=fresh_for, healthy=healthy, detail=detail)

    async def _sweep(self) -> None:
        report = await self.consumer.sweep(
            lock_ms=int(self.settings.sweep_interval_seconds * 1000),
            worker_ttl_ms=int(self.settings.heartbeat_ttl_seconds * 1000),
        )
        if report and (report.requeued or report.failed_stalled):
            log.warning(
                "sweeper: %d job(s) with expired leases back to pending, %d failed for stalling",
                report.requeued,
                report.failed_stalled,
            )
