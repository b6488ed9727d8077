"""Schedules (repeatable jobs): the model, the tick arithmetic, and the claim of a due tick.

A schedule is a hash (`schedule:<id>`) plus an entry in the `schedules` sorted set scored by
its next tick (ms). Any API or worker process may notice a due tick (`ScheduleTicker`); it
claims it with `schedule-claim-14.lua`, which enqueues the job only while the score is still
the tick it read (compare-and-set) and moves the score to the next tick in the same step. The
job's id is `<schedule id>:<tick ms>`, so even two claims of one tick could not both enqueue.
Why ours and not taskiq's scheduler: that is one more process, a single point of failure that
loses or doubles ticks when it restarts (docs/queue.md "Schedules").
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from service.queue.errors import (
    ErrorCategory,
    InvalidRequestError,
    JobQueueError,
    QueueUnavailableError,
)
from service.queue.models import JobSpec
from service.queue.options import JobOptions
from service.queue.scripts import ScriptArg
from service.queue.wire import reraise_swallowed_cancel

if TYPE_CHECKING:
    from service.queue.queue import JobQueue

log = logging.getLogger(__name__)

SCHEDULE_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"
# A tick later than this counts as missed (the fleet was down) and follows `misfire`; a tick
# less late is fired as usual, so a busy moment never loses one.
MISFIRE_GRACE_SECONDS = 5.0
# How often a process looks at the head of `schedules` when nothing is due sooner: ticks fire
# within this (plus one claim's round trip) of their time. One ZRANGE per process per period.
TICKER_POLL_SECONDS = 0.5
# Job ids of the newest runs kept per schedule (GET /schedules/{id} shows their states).
RUNS_KEPT = 10
# Due schedules claimed per look; more wait for the next look a moment later.
CLAIM_BATCH = 100
# A cron whose next run is this far away is treated as "never" (`0 0 30 2 *`).
CRON_HORIZON = timedelta(days=366 * 5)


class ScheduleNotFoundError(JobQueueError):
    """No schedule has that id."""

    category = ErrorCategory.NOT_FOUND
    code = "schedule_not_found"


class ScheduleSpec(BaseModel):
    """What a schedule runs and when: a job (type, data, options as for an enqueue) and a
    cadence (`cron` in `timezone`, or `every_seconds`), within optional bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(min_length=1, max_length=200, examples=["noop"])
    data: dict[str, Any] = Field(default_factory=dict)
    options: JobOptions = Field(default_factory=JobOptions)
    cron: str | None = Field(default=None, max_length=200, examples=["0 2 * * *"])
    every_seconds: int | None = Field(default=None, ge=1, le=366 * 86400)
    timezone: str = Field(default="UTC", max_length=64, examples=["Europe/Berlin"])
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None
    limit: int | None = Field(default=None, gt=0, le=10**9, description="Runs, then it ends.")
    misfire: Literal["skip", "run_once"] = Field(
        default="run_once",
        description="After downtime: `run_once` runs one catch-up job, `skip` none.",
    )

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                CronSim(value, datetime(2000, 1, 1, tzinfo=UTC))
            except CronSimError as exc:
                raise ValueError(f"not a cron expression: {exc}") from None
        return value

    @field_validator("options")
    @classmethod
    def _no_group(cls, value: JobOptions) -> JobOptions:
        # The tick script files jobs ungrouped; a group it dropped silently would be worse.
        if value.group is not None:
            raise ValueError("options.group is not supported on schedules yet: leave it out")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        # available_timezones() first: ZoneInfo would also open paths like "../x".
        if value not in available_timezones():
            raise ValueError(f"unknown IANA timezone {value!r}")
        try:
            ZoneInfo(value)
        except ZoneInfoNotFoundError:
            raise ValueError(f"unknown IANA timezone {value!r}") from None
        return value

    def check(self) -> None:
        """InvalidRequestError naming the field when fields disagree with each other."""
        if (self.cron is None) == (self.every_seconds is None):
            _invalid("cron", "give exactly one of cron and every_seconds")
        if self.options.idempotency_key is not None:
            # Every run would resolve to the first run's job.
            _invalid("options.idempotency_key", "a schedule's runs cannot share a key")
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            _invalid("end_at", "end_at must be after start_at")


def _invalid(field: str, message: str) -> None:
    raise InvalidRequestError(
        f"{field}: {message}", {"errors": [{"field": field, "in": "body", "message": message}]}
    )


class Schedule(BaseModel):
    """A stored schedule, with where it stands."""

    id: str
    spec: ScheduleSpec
    job: JobSpec = Field(description="The job each run enqueues, its defaults resolved.")
    created_at: datetime
    paused: bool
    runs: int = Field(description="Runs on its cadence so far (triggers not counted).")
    next_run_at: datetime | None = Field(description="Null when paused or ended.")
    last_run_ids: list[str] = Field(default_factory=list, description="Newest first.")


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _at(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def next_tick(spec: ScheduleSpec, anchor: datetime, after: datetime) -> datetime | None:
    """The first tick strictly after `after` within the schedule's bounds, None if none.

    `anchor` is where `every_seconds` counts from (start_at, else when it was stored). Cron
    ticks are computed in the schedule's timezone by cronsim, which does what Debian's cron
    does on daylight-saving days: a time the spring-forward skips runs once at the
    transition, a time the fall-back repeats runs once (its first occurrence); a cron that
    fires every hour or more often keeps firing by the wall clock through both.
    """
    after = max(after, spec.start_at - timedelta(microseconds=1)) if spec.start_at else after
    if spec.every_seconds is not None:
        periods = math.floor((after - anchor).total_seconds() / spec.every_seconds) + 1
        tick = anchor + timedelta(seconds=max(periods, 0) * spec.every_seconds)
    else:
        assert spec.cron is not None  # check() guarantees one of the two
        zone = ZoneInfo(spec.timezone)
        # cronsim steps whole seconds from its start; a start inside a second would skip it.
        start = after.astimezone(zone).replace(microsecond=0)
        tick = next(iter(CronSim(spec.cron, start))).astimezone(UTC)
        if tick - after > CRON_HORIZON:
            return None
    if spec.end_at and tick > spec.end_at:
        return None
    return tick


def upcoming(spec: ScheduleSpec, anchor: datetime, after: datetime, count: int) -> list[datetime]:
    """The next `count` ticks after `after` (fewer if the schedule ends)."""
    ticks: list[datetime] = []
    tick = next_tick(spec, anchor, after)
    while tick is not None and len(ticks) < count:
        ticks.append(tick)
        tick = next_tick(spec, anchor, tick)
    return ticks


def upcoming_runs(schedule: Schedule, count: int) -> list[datetime]:
    """A stored schedule's next `count` run times: none while paused or ended, and no more
    than its `limit` has left."""
    after = schedule.next_run_at
    if schedule.spec.limit is not None:
        count = min(count, schedule.spec.limit - schedule.runs)
    if after is None or count <= 0:
        return []
    return [after, *upcoming(schedule.spec, anchor_of_schedule(schedule), after, count - 1)]


def tick_job_id(schedule_id: str, tick_ms: int) -> str:
    """The id of the job a tick enqueues: one tick, one id, so one job."""
    return f"{schedule_id}:{tick_ms}"


def trigger_job_id(schedule_id: str) -> str:
    """The id of a run outside the cadence (`/trigger`)."""
    return f"{schedule_id}:now-{uuid.uuid4().hex[:12]}"


# --- claiming due ticks ---------------------------------------------------------------------


def job_args(job_id: str, job: JobSpec, now: int, message: str) -> dict[str, ScriptArg]:
    """The job half of a `schedule-claim` call."""
    return {
        "job_id": job_id, "type": job.type, "priority": int(job.priority), "message": message,
        "due_ms": now + int(job.delay_seconds * 1000), "attempts": job.attempts,
        "keep_completed": job.keep_completed.encode(), "keep_failed": job.keep_failed.encode(),
    }  # fmt: skip


NO_JOB: dict[str, ScriptArg] = {
    "job_id": "", "type": "", "priority": 0, "message": "", "due_ms": 0, "attempts": 0,
    "keep_completed": "", "keep_failed": "",
}  # fmt: skip


def plan_claim(
    schedule: Schedule, anchor: datetime, tick_ms: int, now_ms: int
) -> tuple[bool, int, int]:
    """For a due tick: (enqueue a job?, next tick ms or -1 when it ends, runs it counts).

    On time (or less than MISFIRE_GRACE_SECONDS late) the tick runs and the next follows it,
    so a late process catches up tick by tick. Later, the fleet was down: the missed ticks
    fold into one catch-up run (`run_once`) or none (`skip`), and the next tick is the first
    after now.
    """
    spec = schedule.spec
    missed = now_ms - tick_ms > MISFIRE_GRACE_SECONDS * 1000
    run = not missed or spec.misfire == "run_once"
    runs = schedule.runs + (1 if run else 0)
    if spec.limit is not None and runs >= spec.limit:
        return run, -1, runs
    following = next_tick(spec, anchor, _at(now_ms if missed else tick_ms))
    return run, (-1 if following is None else _ms(following)), runs


class ScheduleTicker:
    """Fires due ticks from inside a process that runs anyway (API or worker): no extra
    process, no leader. Idle cost: one ZRANGE of the set's head per TICKER_POLL_SECONDS."""

    def __init__(self, queue: JobQueue, poll_seconds: float = TICKER_POLL_SECONDS) -> None:
        self.queue = queue
        self.poll_seconds = poll_seconds
        self._waiting_for_redis = False

    async def run(self) -> None:
        """Fire due ticks until cancelled; a Redis failure is logged and retried next poll."""
        while True:
            try:
                wait = await self.step()
            except QueueUnavailableError:
                # The process names the outage itself (the API's 503, the worker's retries): one
                # line here when it starts and one when it ends, not a traceback every poll.
                if not self._waiting_for_redis:
                    log.warning("schedules: due ticks wait until Redis answers again")
                self._waiting_for_redis = True
                wait = self.poll_seconds
            except Exception:
                log.exception("could not fire due schedules")
                wait = self.poll_seconds
            else:
                if self._waiting_for_redis:
                    log.info("schedules: Redis answers again; firing due ticks")
                self._waiting_for_redis = False
            reraise_swallowed_cancel()
            await asyncio.sleep(wait)

    async def step(self) -> float:
        """Claim what is due now; the seconds until the next look."""
        queue = self.queue
        now = queue.now_ms()
        due = await queue.due_schedules(now, CLAIM_BATCH)
        for schedule_id, tick_ms in due:
            await queue.claim_tick(schedule_id, tick_ms)
        if len(due) == CLAIM_BATCH:
            return 0.0
        head = await queue.next_schedule_ms()
        if head is None:
            return self.poll_seconds
        return min(self.poll_seconds, max(head - queue.now_ms(), 0) / 1000)


# --- the stored form ------------------------------------------------------------------------

NEVER = math.inf  # the score of a paused or ended schedule: never due


def schedule_fields(spec: ScheduleSpec, job: JobSpec, anchor_ms: int) -> dict[str, str]:
    """The hash fields a put writes (runs restart; `paused` and `created` are kept)."""
    return {
        "spec": spec.model_dump_json(),
        "job": job.model_dump_json(),
        "anchor": str(anchor_ms),
        "runs": "0",
    }


def schedule_from_hash(
    schedule_id: str, row: dict[str, str], score: float | None, run_ids: list[str]
) -> Schedule:
    """A Schedule from its hash, its score in `schedules` and its run list."""
    return Schedule(
        id=schedule_id,
        spec=ScheduleSpec.model_validate_json(row["spec"]),
        job=JobSpec.model_validate_json(row["job"]),
        created_at=_at(int(row["created"])),
        paused=row.get("paused") == "1",
        runs=int(row.get("runs", 0)),
        next_run_at=None if score is None or math.isinf(score) else _at(score),
        last_run_ids=run_ids,
    )


def anchor_of(row: dict[str, str]) -> datetime:
    """Where a stored schedule's `every_seconds` counts from."""
    return _at(int(row["anchor"]))


def first_tick_ms(spec: ScheduleSpec, anchor: datetime, now_ms: int) -> float:
    """The score of a schedule (re)starting now: its next tick, NEVER if it has none."""
    tick = next_tick(spec, anchor, _at(now_ms))
    return NEVER if tick is None else _ms(tick)


def not_found(schedule_id: str) -> ScheduleNotFoundError:
    """The 404 of an unknown schedule id."""
    return ScheduleNotFoundError(f"no schedule with id {schedule_id!r}", {"id": schedule_id})


def anchor_of_schedule(schedule: Schedule) -> datetime:
    """Where `every_seconds` counts from, as far as a reader of the schedule can tell: a
    multiple of the period from its next run."""
    return schedule.next_run_at or schedule.created_at
