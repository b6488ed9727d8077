"""Lease renewal on a thread of its own, with its own Redis connection.

Job code runs on the worker's event loop, and a job that hogs it (a CPU-bound loop, a blocking
call) would otherwise stop every lease of the process from being renewed: the sweeper then hands
live jobs to other workers and they run twice (issue 12). This thread renews whatever the
runtime holds every LEASE_RENEW_SECONDS whatever the loop is doing, so only a dead process
loses its leases: the thread dies with it (a daemon thread; SIGKILL takes it along), and it
renews only what the runtime holds at that moment, so a job the runtime let go lapses.

It also keeps SIGTERM prompt when the loop is hogged: once a shutdown has begun
(`begin_deadline`) and the normal path has not stopped this thread in time, it hands the jobs
back itself and ends the process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable

from service.queue.connection import connect
from service.queue.consumer import Consumer, JobStart
from service.queue.queue import JobQueue
from service.settings import Settings

log = logging.getLogger(__name__)

# Exit status of a worker process that had to end itself after its shutdown deadline.
HARD_EXIT_STATUS = 3


class LeaseKeeper:
    """Renews the leases of the jobs `held()` names, on its own thread and connection."""

    def __init__(
        self,
        settings: Settings,
        queue: JobQueue,
        worker_id: str,
        held: Callable[[], list[str]],
        *,
        on_lost: Callable[[list[str]], None],
        on_cycle: Callable[[], None] = lambda: None,
        starts: Callable[[], list[JobStart]] = list,
        on_starts_sent: Callable[[list[JobStart]], None] = lambda _: None,
    ) -> None:
        self.settings = settings
        self.keys, self.config, self.clock = queue.keys, queue.config, queue.clock
        self.worker_id = worker_id
        self.interval = settings.renew_interval
        self._held = held  # called on this thread: must be safe without the event loop
        self._on_lost = on_lost  # called on this thread with the jobs the renewal found lost
        # Called on this thread before every renewal, whatever the event loop is doing: the
        # container health record is written from here (a hogged loop is not a dead process).
        self._on_cycle = on_cycle
        # Jobs whose code started since the last renewal, and what to tell once they are
        # recorded: the start rides on the renewal, so it costs no round trip (both on this thread).
        self._starts, self._on_starts_sent = starts, on_starts_sent
        self._wake = threading.Event()
        self._stopped = False
        self._deadline: float | None = None
        self._thread = threading.Thread(target=self._main, name="lease-keeper", daemon=True)

    def start(self) -> None:
        """Start renewing (the first renewal comes one interval from now)."""
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop renewing; waits briefly for the thread (a call stuck on Redis is abandoned)."""
        self._stopped = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def begin_deadline(self, seconds: float) -> None:
        """A shutdown began: unless `stop()` comes within `seconds`, hand back and exit.
        Safe to call from a signal handler."""
        if self._deadline is None:
            self._deadline = time.monotonic() + seconds
            self._wake.set()

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            consumer = Consumer(
                JobQueue(connect(self.settings), self.keys, self.config, self.clock),
                self.worker_id,
                self.settings.lease_seconds,
            )
            self._run(loop, consumer)
            loop.run_until_complete(consumer.redis.aclose())
        finally:
            loop.close()

    def _run(self, loop: asyncio.AbstractEventLoop, consumer: Consumer) -> None:
        next_renewal = time.monotonic() + self.interval
        # Waits on `_wake`, set by stop() and begin_deadline(); otherwise until the next renewal
        # or the shutdown deadline, whichever is first.
        while True:
            self._wake.wait(max(0.0, min(next_renewal, self._deadline or next_renewal)
                                - time.monotonic()))  # fmt: skip
            self._wake.clear()
            if self._stopped:
                return
            now = time.monotonic()
            if self._deadline is not None and now >= self._deadline:
                loop.run_until_complete(self._hand_back_and_exit(consumer))
            if now >= next_renewal:
                self._on_cycle()
                loop.run_until_complete(self._renew(consumer))
                next_renewal = now + self.interval

    async def _renew(self, consumer: Consumer) -> None:
        starts = self._starts()
        try:
            lost = await consumer.renew(self._held(), starts)
        except Exception:  # Redis down: the next renewal tries again; leases have slack
            log.exception("could not renew leases")
            return
        self._on_starts_sent(starts)
        if lost:
            self._on_lost(lost)

    async def _hand_back_and_exit(self, consumer: Consumer) -> None:
        """The event loop did not finish its shutdown in time (a job's code holds it): do what
        stop() would have, from here, and end the process."""
        held = self._held()
        log.warning(
            "shutdown deadline passed with the event loop still busy; handing back %d job(s) "
            "and exiting",
            len(held),
        )
        try:
            await consumer.release(held)
            await consumer.deregister()
        except Exception:  # their leases lapse instead
            log.exception("could not hand jobs back; they return when their leases expire")
        logging.shutdown()
        os._exit(HARD_EXIT_STATUS)
