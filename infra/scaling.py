"""The worker scaling numbers, computed once for the deployed policy and for the simulator.

Worker autoscaling follows AWS's "backlog per task" pattern: target tracking keeps BacklogPerTask
(service.metrics.collector.backlog_per_task: pending due jobs plus leased jobs, per live worker
task) near a target of

    jobs one task holds at once (workerCount x workerConcurrency)
    + acceptable wait (s) x measured jobs per second one task completes

i.e. a task's full slots plus the queue it works off within the acceptable wait. AWS's pattern
counts queued messages only; our backlog also counts the leased ones (so a busy fleet with an
empty pending set does not read as idle), so the target adds what a task holds.

Target tracking cannot leave zero tasks (its formula multiplies the current count), so a step
policy adds a task when jobs are pending and no worker is alive. infra/components/workers.py
deploys these numbers and infra/simulate.py replays load through them with `desired_after`,
which follows Application Auto Scaling's documented target-tracking behaviour, so the two cannot
drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Application Auto Scaling's target-tracking alarms: scale out after 3 one-minute datapoints
# above target, scale in after 15 below it (the AlarmHigh / AlarmLow it creates).
SCALE_OUT_DATAPOINTS = 3
SCALE_IN_DATAPOINTS = 15
# Scale-in waits for the metric to sit this far below target, so a backlog hovering at the
# target does not scale in and straight out again (AWS keeps a similar margin internally).
SCALE_IN_MARGIN = 0.9
# The step policy that starts the first task when jobs wait and no worker is alive.
FROM_ZERO_COOLDOWN_SECONDS = 180


@dataclass(frozen=True)
class ScalingPlan:
    """Bounds, target and timing of worker autoscaling."""

    min_tasks: int
    max_tasks: int
    acceptable_wait_seconds: float
    task_jobs_per_second: float
    slots_per_task: int
    scale_out_cooldown_seconds: int = 120
    scale_in_cooldown_seconds: int = 300
    task_start_seconds: int = 90

    def __post_init__(self) -> None:
        if not 0 <= self.min_tasks <= self.max_tasks or self.max_tasks < 1:
            raise ValueError("workerMinCount must be >= 0 and <= workerMaxCount (>= 1)")
        if self.acceptable_wait_seconds <= 0 or self.task_jobs_per_second <= 0:
            raise ValueError("acceptableWaitSeconds and taskJobsPerSecond must be positive")

    @property
    def target_backlog_per_task(self) -> float:
        """The BacklogPerTask the policy tracks: a task's slots plus what it clears in the wait."""
        queued = self.acceptable_wait_seconds * self.task_jobs_per_second
        return round(self.slots_per_task + queued, 2)

    def desired_after(
        self, current: int, metric: float, minutes_above: int, minutes_below: int
    ) -> int:
        """Desired task count after one evaluation of the target-tracking policy.

        `current` is the desired count now, `metric` the BacklogPerTask datapoint, and
        `minutes_above` / `minutes_below` how many consecutive minutes (this one included) it
        has been above the target / below the scale-in line. The result is clamped to the
        bounds; cooldowns are the caller's (they depend on history).
        """
        target = self.target_backlog_per_task
        proportional = math.ceil(max(current, 1) * metric / target)
        if minutes_above >= SCALE_OUT_DATAPOINTS and metric > target:
            return self._clamp(max(proportional, current + 1))
        if minutes_below >= SCALE_IN_DATAPOINTS and metric < target * SCALE_IN_MARGIN:
            return self._clamp(min(proportional, current - 1) if current > 0 else 0)
        return self._clamp(current)

    def _clamp(self, count: int) -> int:
        return max(self.min_tasks, min(self.max_tasks, count))
