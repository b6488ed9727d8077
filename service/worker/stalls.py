"""The worker's stall detector: a worker that could take jobs but does not is seen, and heals.

Defense in depth behind the dispatcher's wake-ups (docs/queue.md, "Waits"): if some path ever
waits on a signal that the event freeing room does not send, the worker would sit idle with
jobs pending while its heartbeat looks healthy (issue 19). The runtime asks this detector at
every heartbeat whether it is in that state; if so it logs one warning, restarts its dispatch
loop and counts the stall, and the worker's registry entry and container health record say so.

"Could take" means: a free execution slot, and either jobs already buffered or room to hold
more; "does not" means no take attempt in flight and none ended for `after_seconds`. Counting
attempts rather than jobs taken matters: a worker whose only pending jobs are of a type at its
concurrency limit keeps trying and finding nothing, and is not stalled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Heartbeats in a row that find the worker stalled (its restarts not healing it) before its
# container health record says unhealthy, so that ECS replaces a worker that cannot recover
# but not one that healed at the first restart.
UNHEALTHY_AFTER_STALLED_HEARTBEATS = 3


@dataclass(frozen=True)
class Capacity:
    """What the worker holds and does, as seen at one heartbeat."""

    held: int  # jobs leased to this worker: buffered, running or ending
    ending: int  # code ended, end not yet recorded
    buffered: int  # taken, not yet started
    room: int  # jobs it may still take
    free_slots: int  # jobs it may still start
    taking: bool  # a take (dequeue, or the idle wait with its dequeue) is in flight
    quiet_seconds: float  # since the last take attempt ended or a job was started

    def could_take(self) -> bool:
        """Whether the worker has anything to do without waiting for Redis or its jobs."""
        return not self.taking and self.free_slots > 0 and (self.buffered > 0 or self.room > 0)

    def describe(self) -> str:
        """The state a stall warning and the health record report."""
        return (
            f"held {self.held}, ending {self.ending}, buffered {self.buffered}, room {self.room}, "
            f"free slots {self.free_slots}, nothing taken for {self.quiet_seconds:.0f} s"
        )


class StallDetector:
    """Turns what the runtime sees at each heartbeat into a verdict and a count."""

    def __init__(self, after_seconds: float) -> None:
        self.after_seconds = after_seconds
        self.stalls = 0  # episodes since the worker started
        self._in_a_row = 0  # heartbeats in a row that found it stalled
        self._last: Capacity | None = None

    def suspects(self, capacity: Capacity) -> bool:
        """Whether the worker could take and has not for long enough (no Redis read needed)."""
        return capacity.could_take() and capacity.quiet_seconds >= self.after_seconds

    @property
    def stalled(self) -> bool:
        """The verdict of the last heartbeat."""
        return self._in_a_row > 0

    def clear(self) -> None:
        """This heartbeat found the worker doing its work."""
        self._in_a_row = 0

    def found_stalled(self, capacity: Capacity) -> None:
        """This heartbeat found the worker stalled: warn once per episode, count it."""
        if not self.stalled:
            self.stalls += 1
            log.warning(
                "worker stalled: it can take jobs, due jobs are pending, and it has taken none "
                "(%s); restarting its dispatch loop (stall %d)",
                capacity.describe(),
                self.stalls,
            )
        self._in_a_row += 1
        self._last = capacity

    @property
    def healthy(self) -> bool:
        """False once restarts have not healed it for several heartbeats in a row."""
        return self._in_a_row < UNHEALTHY_AFTER_STALLED_HEARTBEATS

    def detail(self) -> str:
        """One line for the container health record."""
        if not self.stalled or self._last is None:
            return f"taking jobs ({self.stalls} stall(s) healed since start)"
        return f"stalled for {self._in_a_row} heartbeat(s) in a row: {self._last.describe()}"
