"""Capacity simulation: replay a load profile through a stack's own worker scaling settings.

    uv run python -m infra.simulate --stack dev --profile burst [--json] [--svg docs/capacity.svg]

The stack's configuration is read by the program's own config module (infra/config.py), the
scaling metric by the metrics task's own functions (service.metrics.collector.backlog_of and
backlog_per_task) and the policy's decisions by the same ScalingPlan the program deploys
(infra/scaling.py), so a change to any of them changes the simulation too.

The model, one second at a time: jobs arrive at the profile's rate; a ready worker task holds
up to its slots (workerCount x workerConcurrency) and completes `taskJobsPerSecond`, so each job
takes slots / rate seconds. Every minute the metrics task publishes BacklogPerTask over the ready
(heartbeating) tasks and the target-tracking policy evaluates it with its datapoint counts and
cooldowns; new tasks become ready `workerTaskStartSeconds` after the scale-out. Idle workers wait
in BZPOPMIN and Redis serves the longest-waiting one first, so jobs spread over every ready task.
On scale-in ECS lowers the desired count at once but stops only unprotected tasks: a task
holding jobs is protected (renewed while busy, service/ecs_protection.py) and stops once it
idles. `--no-protection` replays the same load without it, where ECS stops tasks regardless of
what they hold (each such stop is a busy-task scale-in: its jobs are handed back and rerun).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from infra.config import StackSettings, read_stack_settings
from infra.scaling import FROM_ZERO_COOLDOWN_SECONDS, ScalingPlan
from service.metrics.collector import backlog_of, backlog_per_task
from service.queue.models import QueueCounts
from service.queue.states import JobState

ROOT = Path(__file__).resolve().parents[1]
MINUTE = 60
# Fargate on-demand, us-east-1, per hour: vCPU and GB of memory (ARM64 is 20% cheaper).
VCPU_HOUR_USD = 0.04048
GB_HOUR_USD = 0.004445
ARM_DISCOUNT = 0.8
# The steady profile runs the minimum fleet at half its throughput.
STEADY_UTILISATION = 0.5
BURST_FACTOR = 10
BURST_MINUTES = 5
LEAD_IN_MINUTES = 10
# After the load, keep simulating until the fleet is back at its minimum (scale-in is slow).
MAX_TAIL_MINUTES = 120


@dataclass
class Task:
    """One worker task: when it becomes ready, and since when it has held jobs."""

    ready_at: float
    busy_since: float | None = None


@dataclass
class Minute:
    """One row of the timeline."""

    minute: int
    arrivals: int
    desired: int
    ready: int
    backlog: int
    backlog_per_task: float
    oldest_wait_s: float


@dataclass
class Result:
    """What one simulation produced."""

    profile: str
    timeline: list[Minute] = field(default_factory=list)
    scale_out_events: list[int] = field(default_factory=list)  # seconds
    scale_in_events: list[int] = field(default_factory=list)
    busy_task_scale_ins: int = 0
    deferred_by_protection: int = 0
    # Seconds x tasks that kept running above the desired count because they held jobs.
    surplus_task_seconds: float = 0.0
    max_oldest_wait_s: float = 0.0
    drained_s: float | None = None
    task_seconds: float = 0.0
    cost_usd: float = 0.0

    def summary(self) -> dict[str, object]:
        """The figures `--json` prints."""
        return {
            "profile": self.profile,
            "max_tasks": max((m.desired for m in self.timeline), default=0),
            "scale_out_events": len(self.scale_out_events),
            "scale_in_events": len(self.scale_in_events),
            "max_oldest_wait_s": round(self.max_oldest_wait_s, 1),
            "drained_s": None if self.drained_s is None else round(self.drained_s, 1),
            "busy_task_scale_ins": self.busy_task_scale_ins,
            "cost_usd": round(self.cost_usd, 4),
        }


def steady_rate_per_minute(plan: ScalingPlan) -> float:
    """Jobs per minute of the built-in steady load."""
    return max(plan.min_tasks, 1) * plan.task_jobs_per_second * MINUTE * STEADY_UTILISATION


def builtin_profile(name: str, plan: ScalingPlan) -> list[float]:
    """Jobs per minute, minute by minute."""
    steady = steady_rate_per_minute(plan)
    if name == "steady":
        return [steady] * 60
    if name == "burst":
        return [steady] * LEAD_IN_MINUTES + [steady * BURST_FACTOR] * BURST_MINUTES + [steady] * 30
    if name == "daily":
        # A day: quiet nights (0.2x steady), a broad afternoon peak (3x, beyond one task).
        return [
            steady * (1.6 - 1.4 * math.cos(2 * math.pi * (m - 120) / 1440)) for m in range(1440)
        ]
    raise ValueError(f"unknown profile {name!r}: steady, burst, daily or a CSV file")


def csv_profile(path: Path) -> list[float]:
    """A CSV of jobs per minute: one number per row, or rows of `minute,jobs` (header allowed)."""
    rates = []
    with path.open(newline="") as handle:
        for row in csv.reader(handle):
            if not row:
                continue
            try:
                rates.append(float(row[-1]))
            except ValueError:
                if rates:  # only a first row may be a header
                    raise ValueError(f"{path}: {row!r} is not a number of jobs") from None
    if not rates or min(rates) < 0:
        raise ValueError(f"{path}: needs at least one non-negative jobs-per-minute value")
    return rates


class Simulation:
    """The fleet, the queue and the policy, stepped one second at a time."""

    def __init__(self, plan: ScalingPlan, *, protection: bool = True) -> None:
        self.plan = plan
        self.protection = protection
        self.job_seconds = plan.slots_per_task / plan.task_jobs_per_second
        self.pending: deque[list[float]] = deque()  # [arrival time, jobs]
        self.running: deque[list[float]] = deque()  # [finish time, jobs]
        self.tasks: list[Task] = [Task(ready_at=0.0) for _ in range(plan.min_tasks)]
        self.desired = plan.min_tasks
        self.above = self.below = 0
        self.last_out = self.last_in = -math.inf
        self.carry = 0.0
        self.result = Result(profile="")

    @property
    def pending_jobs(self) -> float:
        """Jobs waiting to start."""
        return sum(n for _, n in self.pending)

    @property
    def running_jobs(self) -> float:
        """Jobs leased by a task."""
        return sum(n for _, n in self.running)

    def ready(self, now: float) -> list[Task]:
        """Tasks that run jobs (and heartbeat)."""
        return [t for t in self.tasks if t.ready_at <= now]

    def step(self, now: float, rate_per_second: float) -> None:
        """One second: arrivals, completions, starts, busy marks, surplus tasks stopping."""
        self.carry += rate_per_second
        arrived = math.floor(self.carry)
        self.carry -= arrived
        if arrived:
            self.pending.append([now, float(arrived)])
        while self.running and self.running[0][0] <= now:
            self.running.popleft()
        room = len(self.ready(now)) * self.plan.slots_per_task - self.running_jobs
        self._start(now, room)
        self._mark_busy(now)
        self._stop_surplus(now)
        self.result.task_seconds += len(self.tasks)

    def _start(self, now: float, room: float) -> None:
        while room > 0 and self.pending:
            batch = self.pending[0]
            taken = min(batch[1], room)
            batch[1] -= taken
            room -= taken
            self.running.append([now + self.job_seconds, taken])
            if batch[1] <= 0:
                self.pending.popleft()

    def _mark_busy(self, now: float) -> None:
        # Receivers share the work: as many tasks hold jobs as there are jobs (up to all).
        ready = self.ready(now)
        busy = min(len(ready), math.ceil(self.running_jobs))
        for index, task in enumerate(ready):
            if index < busy:
                task.busy_since = task.busy_since if task.busy_since is not None else now
            else:
                task.busy_since = None

    def _stop_surplus(self, now: float) -> None:
        """Protected: ECS stops idle tasks only. Unprotected: the oldest tasks, busy or not."""
        surplus = len(self.tasks) - self.desired
        if surplus <= 0:
            return
        stoppable = [t for t in self.tasks if t.busy_since is None or not self.protection]
        for task in stoppable[:surplus]:
            self.tasks.remove(task)
            if task.busy_since is not None:
                self.result.busy_task_scale_ins += 1
        self.result.surplus_task_seconds += max(0, len(self.tasks) - self.desired)

    def evaluate(self, now: float) -> float:
        """The minute's metric and the policy's decision; returns BacklogPerTask."""
        counts = QueueCounts(
            by_state={
                JobState.PENDING: math.ceil(self.pending_jobs),
                JobState.PROCESSING: math.ceil(self.running_jobs),
            },
            pending_by_priority={},
            by_type={},
            oldest_pending_age_seconds=0.0,
        )
        live = len(self.ready(now))
        metric = backlog_per_task(backlog_of(counts), live)
        target = self.plan.target_backlog_per_task
        self.above = self.above + 1 if metric > target else 0
        self.below = self.below + 1 if metric < target else 0
        if self.desired == 0 and counts.by_state[JobState.PENDING] > 0 and live == 0:
            self._scale_from_zero(now)
            return metric
        wanted = self.plan.desired_after(self.desired, metric, self.above, self.below)
        if wanted > self.desired and now - self.last_out >= self.plan.scale_out_cooldown_seconds:
            self._scale_to(now, wanted)
            self.last_out = now
            self.result.scale_out_events.append(int(now))
        elif wanted < self.desired and now - self.last_in >= self.plan.scale_in_cooldown_seconds:
            self._scale_to(now, wanted)
            self.last_in = now
            self.below = 0
            self.result.scale_in_events.append(int(now))
        return metric

    def _scale_from_zero(self, now: float) -> None:
        if now - self.last_out >= FROM_ZERO_COOLDOWN_SECONDS:
            self._scale_to(now, 1)
            self.last_out = now
            self.result.scale_out_events.append(int(now))

    def _scale_to(self, now: float, count: int) -> None:
        if count < self.desired:
            busy = sum(1 for t in self.tasks if t.busy_since is not None)
            self.result.deferred_by_protection += max(0, busy - count)
        self.desired = count
        while len(self.tasks) < count:
            self.tasks.append(Task(ready_at=now + self.plan.task_start_seconds))

    def oldest_wait(self, now: float) -> float:
        """How long the oldest pending job has waited."""
        return now - self.pending[0][0] if self.pending else 0.0


def peak_window(profile: Sequence[float]) -> tuple[int, int] | None:
    """First and last minute of the load above 1.5x the profile's median rate, if any."""
    ordered = sorted(profile)
    median = ordered[len(ordered) // 2]
    peak = [i for i, rate in enumerate(profile) if rate > 1.5 * median]
    return (peak[0], peak[-1]) if peak else None


def simulate(
    plan: ScalingPlan, profile: Sequence[float], name: str, *, protection: bool = True
) -> Result:
    """Run `profile` (jobs per minute) then an idle tail until the fleet is back at minimum.

    `drained_s` counts from the start of the peak (see peak_window) until the backlog is back
    at its level before the peak with nobody waiting; without a peak, until the queue is empty
    after the last arrival.
    """
    sim = Simulation(plan, protection=protection)
    sim.result.profile = name
    load_end = len(profile) * MINUTE
    window = peak_window(profile)
    start = window[0] * MINUTE if window else 0
    after = (window[1] + 1) * MINUTE if window else load_end
    baseline: float | None = None
    for second in range(load_end + MAX_TAIL_MINUTES * MINUTE):
        minute = second // MINUTE
        rate = profile[minute] / MINUTE if minute < len(profile) else 0.0
        if second == start:
            baseline = sim.pending_jobs + sim.running_jobs
        sim.step(float(second), rate)
        wait = sim.oldest_wait(float(second))
        sim.result.max_oldest_wait_s = max(sim.result.max_oldest_wait_s, wait)
        if sim.result.drained_s is None and second >= after and _back_to(sim, baseline):
            sim.result.drained_s = float(second - start)
        if second % MINUTE == MINUTE - 1:
            _record_minute(sim, second, minute, profile, wait)
            if second >= load_end and len(sim.tasks) == plan.min_tasks and _empty(sim):
                break
    return sim.result


def _record_minute(
    sim: Simulation, second: int, minute: int, profile: Sequence[float], wait: float
) -> None:
    metric = sim.evaluate(float(second))
    sim.result.timeline.append(
        Minute(
            minute=minute,
            arrivals=round(profile[minute]) if minute < len(profile) else 0,
            desired=sim.desired,
            ready=len(sim.ready(float(second))),
            backlog=math.ceil(sim.pending_jobs + sim.running_jobs),
            backlog_per_task=round(metric, 1),
            oldest_wait_s=round(wait, 1),
        )
    )


def _back_to(sim: Simulation, baseline: float | None) -> bool:
    """Nobody waits and the backlog is no larger than before the peak."""
    if baseline is None or sim.pending:
        return False
    return sim.pending_jobs + sim.running_jobs <= baseline


def _empty(sim: Simulation) -> bool:
    return not sim.pending and not sim.running


def cost_usd(settings: StackSettings, task_seconds: float) -> float:
    """Fargate on-demand price of the worker task-seconds."""
    size = settings.worker.size
    hourly = size.cpu / 1024 * VCPU_HOUR_USD + size.memory / 1024 * GB_HOUR_USD
    if settings.cpu_architecture == "ARM64":
        hourly *= ARM_DISCOUNT
    return task_seconds / 3600 * hourly


def stack_settings(stack: str) -> StackSettings:
    """The stack's settings from its Pulumi.<stack>.yaml, read by the program's config module."""
    path = ROOT / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{path.name} not found: pass an existing stack with --stack")
    doc = yaml.safe_load(path.read_text()) or {}
    values = {
        k: str(v).lower() if isinstance(v, bool) else str(v)
        for k, v in (doc.get("config") or {}).items()
    }
    return read_stack_settings(values, stack, values.get("aws:region"))


def run(stack: str, profile: str, *, protection: bool = True) -> Result:
    """Simulate `profile` (a built-in name or a CSV path) on `stack`'s settings."""
    settings = stack_settings(stack)
    plan = settings.worker.scaling
    rates = (
        csv_profile(Path(profile)) if profile.endswith(".csv") else builtin_profile(profile, plan)
    )
    result = simulate(plan, rates, profile, protection=protection)
    result.cost_usd = cost_usd(settings, result.task_seconds)
    return result


def timeline_text(result: Result, plan: ScalingPlan) -> str:
    """The timeline as a table, then the summary."""
    lines = [
        f"target BacklogPerTask {plan.target_backlog_per_task:g}, tasks "
        f"{plan.min_tasks}..{plan.max_tasks}, cooldowns out {plan.scale_out_cooldown_seconds} s "
        f"/ in {plan.scale_in_cooldown_seconds} s, task start {plan.task_start_seconds} s",
        f"{'min':>4} {'jobs/min':>8} {'desired':>7} {'ready':>5} {'backlog':>7} "
        f"{'per task':>8} {'oldest wait s':>13}",
    ]
    lines += [
        f"{m.minute:>4} {m.arrivals:>8} {m.desired:>7} {m.ready:>5} {m.backlog:>7} "
        f"{m.backlog_per_task:>8g} {m.oldest_wait_s:>13g}"
        for m in result.timeline
    ]
    lines.append(json.dumps(result.summary()))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line's options."""
    parser = argparse.ArgumentParser(prog="python -m infra.simulate", description=__doc__)
    parser.add_argument("--stack", default="dev", help="the stack whose settings to replay")
    parser.add_argument(
        "--profile", default="burst", help="steady, burst, daily, or a CSV of jobs per minute"
    )
    parser.add_argument("--json", action="store_true", help="print only the summary as JSON")
    parser.add_argument("--svg", type=Path, help="also write the timeline as an SVG chart")
    parser.add_argument(
        "--no-protection",
        action="store_true",
        help="replay without task scale-in protection (to see what it prevents)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line."""
    args = build_parser().parse_args(argv)
    try:
        result = run(args.stack, args.profile, protection=not args.no_protection)
    except (ValueError, FileNotFoundError) as error:
        print(f"simulate: {error}", file=sys.stderr)
        return 2
    if args.svg:
        from infra.chart import timeline_svg

        args.svg.write_text(timeline_svg(result, stack_settings(args.stack).worker.scaling))
    plan = stack_settings(args.stack).worker.scaling
    print(json.dumps(result.summary()) if args.json else timeline_text(result, plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
