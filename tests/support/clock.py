"""A clock tests move by hand, for JobQueue, Consumer and the metrics loop (leases, delays,
retention and ticks tested without sleeping)."""

from __future__ import annotations

T0 = 1_800_000_000.0  # 2027-01-15: far from any boundary the tests care about


class SettableClock:
    """Returns `now`, which the test sets or advances."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def set(self, now: float) -> None:
        self.now = now
