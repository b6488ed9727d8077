"""A lean taskiq receiver for JobQueueBroker: a dequeued batch starts in one event-loop turn.

taskiq's stock Receiver takes one message per iteration, through two new tasks, two
`asyncio.wait`s and two semaphores, so jobs trickle in one at a time and their ends trickle out
one finish round trip each. This one takes every job the runtime dequeued in one script call
and starts them together, so jobs that end together are recorded by one `finish` call as well.

Each job still runs through taskiq's own `Receiver.callback` (middlewares, dependency
injection, parameter parsing, timeouts, results), so a task behaves exactly as under the stock
receiver. `jobqueue worker` uses it; plain `taskiq worker service.worker:broker` still works
with the stock one (and `--receiver service.worker.receiver:JobReceiver` selects this one).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from taskiq import AckableMessage
from taskiq.abc.broker import AsyncBroker
from taskiq.receiver import Receiver

from service.logs import quiet_job_failures
from service.processes import die_with_parent
from service.queue.consumer import Delivery
from service.queue.queue import REDIS_DOWN
from service.queue.wire import reraise_swallowed_cancel
from service.worker.fast_path import FastPath
from service.worker.runtime import WorkerRuntime
from service.worker.taskiq_broker import JobQueueBroker

log = logging.getLogger(__name__)

# After Redis could not be reached to take jobs, wait this long before trying again: long
# enough not to spin while a failover completes, short enough to resume promptly after it.
REDIS_RETRY_SECONDS = 1.0
# After a shutdown signal, the process ends by itself this long after the grace at the latest,
# even if a job's code holds the event loop (time for the normal hand-back to finish first).
HARD_EXIT_AFTER_GRACE_SECONDS = 3.0
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)  # taskiq's manager sends its workers SIGINT


class JobReceiver(Receiver):
    """taskiq's Receiver with batch delivery from WorkerRuntime (other brokers: unchanged)."""

    def __init__(
        self, broker: AsyncBroker, max_async_tasks: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(broker, max_async_tasks=max_async_tasks, **kwargs)
        die_with_parent()  # a worker process of `jobqueue run` ends with taskiq's manager
        # The runtime logs each job failure as one line; taskiq's copy adds the traceback the
        # job keeps. Here, not only in configure_logging: `run_workers` may not have called it.
        quiet_job_failures()
        self._task_limit = max_async_tasks if max_async_tasks and max_async_tasks > 0 else None

    async def listen(self, finish_event: asyncio.Event) -> None:
        """Run jobs until `finish_event` is set, then let running ones finish within the
        receiver's `wait_tasks_timeout` (the worker's shutdown grace)."""
        if not isinstance(self.broker, JobQueueBroker):
            await super().listen(finish_event)
            return
        if self.run_startup:
            await self.broker.startup()
        runtime = self.broker.runtime
        if runtime is None:
            raise RuntimeError("JobReceiver needs a broker started as a worker process")
        grace = self.wait_tasks_timeout
        if grace is None:
            grace = self.broker.settings.shutdown_grace_seconds
        with _deadline_on_shutdown_signals(runtime, grace + HARD_EXIT_AFTER_GRACE_SECONDS):
            running = await _Dispatch(self, runtime, finish_event).run()
            if finish_event.is_set():  # a signal, not taskiq's --max-tasks-per-child
                await runtime.shutdown_signalled()
            waited_from = time.monotonic()
            if running:
                log.info("waiting for %d running job(s) to finish", len(running))
                # Woken by the last of them ending, or the grace running out.
                await asyncio.wait(running, timeout=self.wait_tasks_timeout)
            # The fast path's jobs end before their ends are written: those land within the
            # same grace, or stop() hands the jobs back.
            left = None
            if self.wait_tasks_timeout is not None:
                left = max(self.wait_tasks_timeout - (time.monotonic() - waited_from), 0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runtime.finishes_recorded(), left)
        if self.on_exit is not None:
            self.on_exit(self)

    def task_limit(self, runtime: WorkerRuntime) -> int:
        """Jobs run at once: the worker's concurrency, or the receiver's limit if lower."""
        if self._task_limit is None:
            return runtime.concurrency
        return min(self._task_limit, runtime.concurrency)


@contextlib.contextmanager
def _deadline_on_shutdown_signals(runtime: WorkerRuntime, seconds: float) -> Iterator[None]:
    """While dispatching, a shutdown signal also starts the runtime's hard deadline (its lease
    keeper thread ends the process if the event loop is still held by then). Only signals that
    already have a shutdown handler of their own (taskiq's worker sets one, which sets the
    finish event) are extended; default handling (pytest's Ctrl-C, say) is left alone. Python
    runs signal handlers on the main thread between bytecodes, so this runs even while a job's
    code hogs the loop."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in SHUTDOWN_SIGNALS:
            handler = signal.getsignal(signum)
            if callable(handler) and handler is not signal.default_int_handler:
                previous[signum] = handler

    def on_signal(signum: int, frame: Any) -> None:
        runtime.begin_shutdown_deadline(seconds)
        previous[signum](signum, frame)

    for extended in previous:
        signal.signal(extended, on_signal)
    try:
        yield
    finally:
        for restored, handler in previous.items():
            signal.signal(restored, handler)


class _Dispatch:
    """One listen() run: takes batches from the runtime and starts each job as a task."""

    def __init__(
        self, receiver: JobReceiver, runtime: WorkerRuntime, finish_event: asyncio.Event
    ) -> None:
        self.receiver = receiver
        self.runtime = runtime
        self.finish_event = finish_event
        self.limit = receiver.task_limit(runtime)
        self.running: set[asyncio.Task[None]] = set()  # every job's callback, until it returns
        # Jobs whose code is running. A job's slot frees when its code ends, not when its end is
        # recorded: the finish round trip then overlaps the next jobs' code instead of stalling
        # the worker. WorkerRuntime lets at most a concurrency's worth of ending jobs off its
        # room, so a stalled finish still bounds what the worker holds.
        self.executing: set[str] = set()
        self.started = 0
        self._loop: asyncio.Task[None] | None = None
        self._waking: asyncio.Future[None] | None = None
        self.fast_path = FastPath(receiver)

    async def run(self) -> set[asyncio.Task[None]]:
        """Dispatch until told to finish; returns the jobs still running."""
        stopper = asyncio.ensure_future(self.finish_event.wait())
        stopper.add_done_callback(self._on_finish)
        self.runtime.dispatcher = self
        try:
            self._loop = asyncio.create_task(self._dispatch())
            while True:
                loop = self._loop
                # Woken when the loop ends; restart() replaces it, and then this waits on the
                # new one. asyncio.wait, not await: a cancelled loop must not end run().
                await asyncio.wait([loop])
                if loop is self._loop:
                    loop.result()  # re-raise what ended it, if anything did
                    break
        finally:
            self.runtime.dispatcher = None
            stopper.cancel()
            if self._loop is not None:
                self._loop.cancel()
            if self._waking is not None:
                await self._waking
        return self.running

    async def _dispatch(self) -> None:
        while not self._should_stop():
            try:
                await self._step()
                # restart() cancels this loop for a new one; a swallowed cancel would leave two.
                reraise_swallowed_cancel()
            except REDIS_DOWN as exc:
                log.warning("cannot take jobs from Redis (%s); retrying", exc)
                # Woken by a finish request, or after the pause.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.finish_event.wait(), REDIS_RETRY_SECONDS)

    def free_slots(self) -> int:
        """Jobs this dispatcher may start now (the runtime's stall detector asks)."""
        return self.limit - len(self.executing)

    def restart(self) -> None:
        """Abandon the current wait and dispatch afresh (the stall detector calls this only
        while no take is in flight, so nothing taken on the server can be left behind)."""
        if self._loop is None or self._loop.done():
            return
        self._loop.cancel()
        self._loop = asyncio.create_task(self._dispatch())

    def _on_finish(self, stopper: asyncio.Future[Any]) -> None:
        self.runtime.room_may_have_freed()
        if not stopper.cancelled():
            # An idle wait is never cancelled (it may have taken jobs on the server by then):
            # it is woken, and whatever it took is handed back with everything else held.
            self._waking = asyncio.ensure_future(self.runtime.wake())

    def _should_stop(self) -> bool:
        return self.finish_event.is_set() or self._allowed_to_start() == 0

    def _allowed_to_start(self) -> int | None:
        """Jobs left before taskiq's --max-tasks-per-child ends this receiver (None: no cap)."""
        cap = self.receiver.max_tasks_to_execute
        return max(cap - self.started, 0) if cap else None

    async def _step(self) -> None:
        # Armed first: whatever frees room from here on, during the awaits below included,
        # ends the wait at the bottom at once. (Armed after the refill, as it once was, the
        # events of that round trip were lost: if every running job ended meanwhile and the
        # take found nothing, nothing was left to wake the worker, issue 19.)
        self.runtime.expect_room()
        free = self.free_slots()
        allowed = self._allowed_to_start()
        if allowed is not None:
            free = min(free, allowed)
        if free > 0:
            batch = self.runtime.take(free)
            if batch:
                for delivery in batch:
                    self._start(delivery)
                return
        if self.runtime.buffered == 0:
            # Fetch the next jobs now, while the ones just started run, so that the round trip
            # overlaps their code instead of following it.
            taken = await self.runtime.refill()
            if taken:
                return
            if taken == 0 and free > 0:
                # Woken by a producer's marker, the next delayed job falling due, shutdown
                # (the worker's own wake key) or IDLE_BLOCK_SECONDS.
                await self.runtime.wait_and_refill()
                return
        # Every slot is busy, or the runtime holds all it may: woken by room_may_have_freed
        # (a job's code ended, an end was recorded, a job was dropped, shutdown).
        await self.runtime.wait_for_room()

    def _start(self, delivery: Delivery) -> None:
        job_id = delivery.job_id
        task = asyncio.create_task(self._run(delivery))
        self.running.add(task)
        self.executing.add(job_id)
        task.add_done_callback(functools.partial(self._finished, job_id))
        self.started += 1

    async def _run(self, delivery: Delivery) -> None:
        """Run one job: on the fast path when nothing configured needs taskiq's full callback
        (see FastPath), else through it."""
        plan = self.fast_path.plan(delivery.message)
        if plan is None:
            ackable = AckableMessage(
                data=delivery.message.encode(), ack=functools.partial(self._ack, delivery.job_id)
            )
            await self.receiver.callback(ackable)
            return
        message, target = plan
        runtime = self.runtime
        runtime.on_start(message)  # what JobLifecycleMiddleware.pre_execute does
        result = await self.fast_path.run(target, message)
        runtime.on_result(message.task_id, result)  # and its post_execute
        # JobResultBackend.set_result is a no-op (the finish script stores the result), so
        # the end is all that is left: the slot frees now, the end is written in the next
        # batch (WHEN_SAVED, taskiq's default ack time: after the result is kept).
        self._code_ended(delivery.job_id)
        runtime.finish_soon(delivery.job_id)

    async def _ack(self, job_id: str) -> None:
        """taskiq acks once the job's code has ended and its result is kept: free the slot, then
        record the end."""
        self._code_ended(job_id)
        await self.runtime.ack(job_id)

    def _finished(self, job_id: str, task: asyncio.Task[None]) -> None:
        self.running.discard(task)
        self._code_ended(job_id)  # if the callback ended without an ack

    def _code_ended(self, job_id: str) -> None:
        self.executing.discard(job_id)
        self.runtime.room_may_have_freed()
