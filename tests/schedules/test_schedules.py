"""Schedules against a real Redis: one job per tick whoever claims it, misfire handling, the
daylight-saving days of cron schedules, and the bad input the model refuses."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from service.queue.errors import InvalidRequestError
from service.queue.models import JobSpec
from service.queue.queue import JobQueue
from service.queue.schedules import ScheduleNotFoundError, ScheduleSpec, ScheduleTicker, upcoming
from service.queue.states import JobState
from service.queue.wire import cancel_and_wait
from tests.support.clock import SettableClock
from tests.support.dead_redis import dead_redis

BERLIN = ZoneInfo("Europe/Berlin")
JOB = JobSpec(type="noop")


def at_clock(queue: JobQueue, clock: SettableClock) -> JobQueue:
    return JobQueue(queue.redis, queue.keys, queue.config, clock=clock)


def local_ticks(spec: ScheduleSpec, day: datetime) -> list[str]:
    """The wall-clock times (with offset) a schedule runs at on one local day."""
    start = day.replace(hour=0, tzinfo=BERLIN) - timedelta(seconds=1)
    ticks = upcoming(spec, start, start, 50)
    local = [t.astimezone(BERLIN) for t in ticks]
    return [t.isoformat() for t in local if t.date() == day.date()]


def test_a_0230_job_runs_once_on_the_spring_forward_day() -> None:
    spec = ScheduleSpec(type="noop", cron="30 2 * * *", timezone="Europe/Berlin")
    # 2026-03-29 02:00 -> 03:00 in Berlin: 02:30 does not exist; it runs once, at 03:00.
    assert local_ticks(spec, datetime(2026, 3, 29)) == ["2026-03-29T03:00:00+02:00"]
    assert local_ticks(spec, datetime(2026, 3, 30)) == ["2026-03-30T02:30:00+02:00"]


def test_a_0230_job_runs_once_on_the_fall_back_day() -> None:
    spec = ScheduleSpec(type="noop", cron="30 2 * * *", timezone="Europe/Berlin")
    # 2026-10-25 03:00 -> 02:00 in Berlin: 02:30 happens twice; it runs at the first.
    assert local_ticks(spec, datetime(2026, 10, 25)) == ["2026-10-25T02:30:00+02:00"]
    assert local_ticks(spec, datetime(2026, 10, 26)) == ["2026-10-26T02:30:00+01:00"]


def test_an_hourly_job_follows_real_hours_through_both_transitions() -> None:
    spec = ScheduleSpec(type="noop", cron="0 * * * *", timezone="Europe/Berlin")
    assert len(local_ticks(spec, datetime(2026, 3, 29))) == 23  # the day has 23 hours
    assert len(local_ticks(spec, datetime(2026, 10, 25))) == 25  # and this one 25


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "timezone"),
        ({"every_seconds": 0}, "every_seconds"),
        ({"every_seconds": 1, "limit": 0}, "limit"),
        ({"every_seconds": 1, "misfire": "flood"}, "misfire"),
    ],
)
def test_bad_fields_are_refused_by_name(fields: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ScheduleSpec(type="noop", **fields)  # type: ignore[arg-type]
    assert [e["loc"][0] for e in caught.value.errors()] == [field]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "cron"),
        ({"cron": "* * * * *", "every_seconds": 5}, "cron"),
        (
            {
                "every_seconds": 5,
                "start_at": datetime(2030, 1, 2, tzinfo=UTC),
                "end_at": datetime(2030, 1, 1, tzinfo=UTC),
            },
            "end_at",
        ),
        ({"every_seconds": 5, "options": {"idempotency_key": "k"}}, "options.idempotency_key"),
    ],
)
def test_fields_that_disagree_are_refused_by_name(fields: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        ScheduleSpec(type="noop", **fields).check()  # type: ignore[arg-type]
    assert [e["field"] for e in caught.value.details["errors"]] == [field]


async def test_racing_claims_of_one_tick_enqueue_one_job(queue: JobQueue) -> None:
    clock = SettableClock()
    q = at_clock(queue, clock)
    await q.put_schedule("tick", ScheduleSpec(type="noop", every_seconds=10), JOB)
    clock.now += 10
    [(schedule_id, tick)] = await q.due_schedules(q.now_ms(), 10)
    others = [at_clock(queue, clock) for _ in range(5)]
    claimed = await asyncio.gather(*(o.claim_tick(schedule_id, tick) for o in others))
    assert [c for c in claimed if c] == [f"tick:{tick}"]
    schedule = await q.get_schedule("tick")
    assert schedule.runs == 1
    assert schedule.last_run_ids == [f"tick:{tick}"]
    assert schedule.next_run_at == datetime.fromtimestamp(tick / 1000 + 10, UTC)
    job = await q.get(f"tick:{tick}")
    assert job.state == "pending"


@pytest.mark.parametrize(("misfire", "jobs"), [("run_once", 1), ("skip", 0)])
async def test_ticks_missed_while_down_follow_misfire(
    queue: JobQueue, misfire: str, jobs: int
) -> None:
    clock = SettableClock()
    q = at_clock(queue, clock)
    spec = ScheduleSpec(type="noop", every_seconds=1, misfire=misfire)  # type: ignore[arg-type]
    await q.put_schedule("down", spec, JOB)
    clock.now += 60.5  # sixty ticks missed
    ticker = ScheduleTicker(q)
    while await ticker.step() == 0:
        pass
    schedule = await q.get_schedule("down")
    assert len(schedule.last_run_ids) == jobs
    assert schedule.next_run_at == datetime.fromtimestamp(clock.now + 0.5, UTC)
    assert (await q.counts()).by_state[JobState.PENDING] == jobs


async def test_a_limited_schedule_ends_and_paused_ones_never_fire(queue: JobQueue) -> None:
    clock = SettableClock()
    q = at_clock(queue, clock)
    await q.put_schedule("twice", ScheduleSpec(type="noop", every_seconds=1, limit=2), JOB)
    await q.put_schedule("held", ScheduleSpec(type="noop", every_seconds=1), JOB)
    await q.pause_schedule("held")
    ticker = ScheduleTicker(q)
    for _ in range(4):
        clock.now += 1
        await ticker.step()
    twice, held = await q.get_schedule("twice"), await q.get_schedule("held")
    assert (twice.runs, twice.next_run_at, len(twice.last_run_ids)) == (2, None, 2)
    assert (held.paused, held.next_run_at, held.last_run_ids) == (True, None, [])
    resumed = await q.pause_schedule("held", paused=False)
    assert resumed.next_run_at == datetime.fromtimestamp(clock.now + 1, UTC)


async def test_trigger_runs_once_now_and_delete_forgets(queue: JobQueue) -> None:
    await queue.put_schedule("daily", ScheduleSpec(type="noop", cron="0 2 * * *"), JOB)
    job_id = await queue.trigger_schedule("daily")
    assert (await queue.get(job_id)).state == "pending"
    assert (await queue.get_schedule("daily")).runs == 0
    await queue.delete_schedule("daily")
    with pytest.raises(ScheduleNotFoundError):
        await queue.get_schedule("daily")
    with pytest.raises(ScheduleNotFoundError):
        await queue.trigger_schedule("daily")


async def test_a_pause_racing_a_delete_leaves_nothing_behind(queue: JobQueue) -> None:
    # Before the writes were WATCHed, a pause that read the schedule before a delete wrote a
    # hash holding only `paused` after it: a schedule without a spec, read back as a 500.
    spec = ScheduleSpec(type="noop", every_seconds=60)
    for _ in range(30):
        await queue.put_schedule("raced", spec, JOB)
        outcomes = await asyncio.gather(
            queue.pause_schedule("raced"), queue.delete_schedule("raced"), return_exceptions=True
        )
        for outcome in outcomes:  # done, or told it was gone: never another error
            assert not isinstance(outcome, Exception) or isinstance(outcome, ScheduleNotFoundError)
        assert not await queue.redis.exists(queue.keys.schedule("raced"))
        assert await queue.redis.zscore(queue.keys.schedules, "raced") is None


async def test_a_put_racing_a_pause_never_leaves_a_paused_schedule_due(queue: JobQueue) -> None:
    spec = ScheduleSpec(type="noop", every_seconds=60)
    await queue.put_schedule("raced", spec, JOB)
    for _ in range(30):
        await queue.pause_schedule("raced", paused=False)
        await asyncio.gather(queue.put_schedule("raced", spec, JOB), queue.pause_schedule("raced"))
        schedule = await queue.get_schedule("raced")
        assert schedule.paused and schedule.next_run_at is None


async def test_a_ticker_without_redis_says_so_once_and_no_traceback(
    queue: JobQueue, caplog: pytest.LogCaptureFixture
) -> None:
    # Once a traceback every 0.5 s poll: `jobqueue api` without Redis printed them beside its
    # own one line about the outage.
    unreachable = JobQueue(dead_redis(), queue.keys, queue.config)
    task = asyncio.create_task(ScheduleTicker(unreachable, poll_seconds=0.01).run())
    with caplog.at_level(logging.INFO, logger="service.queue.schedules"):
        await asyncio.sleep(0.3)  # many polls
        await cancel_and_wait([task])
    await unreachable.redis.aclose()
    assert [r.getMessage() for r in caplog.records] == [
        "schedules: due ticks wait until Redis answers again"
    ]
    assert all(r.exc_info is None for r in caplog.records)
