"""Schedules from Python against a real Redis: `broker.schedule()` by task object and by name,
one job per tick (racing tickers, then real worker processes), cron in a timezone, bad input
refused as the API refuses it, `unschedule`; and taskiq's ScheduleSource interface
(`schedule_by_*`, `add_schedule`, `schedule=` labels) on the same stored schedules."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import ValidationError
from taskiq import TaskiqScheduler
from taskiq.scheduler.scheduled_task import CronSpec, ScheduledTask

from service.jobs import REGISTRY, load_job_types
from service.queue.errors import InvalidRequestError
from service.queue.queue import JobQueue
from service.queue.schedules import ScheduleNotFoundError, ScheduleTicker
from service.queue.states import JobState, Priority
from service.settings import Settings
from service.worker.schedule_source import JobQueueScheduleSource
from service.worker.taskiq_broker import JobQueueBroker
from tests.support.clock import SettableClock
from tests.support.workers import all_done, running_worker, wait_until, worker_env

BERLIN = ZoneInfo("Europe/Berlin")


def broker_settings(queue: JobQueue, redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, queue_name=queue.keys.queue, key_prefix="jqtest")


@pytest.fixture
async def broker(queue: JobQueue, redis_url: str) -> AsyncIterator[JobQueueBroker]:
    """A started producer-side broker (no worker runtime, so no ticker) on the test queue."""
    started = JobQueueBroker(broker_settings(queue, redis_url), registry=load_job_types())
    await started.startup()
    try:
        yield started
    finally:
        await started.shutdown()


def whole_second_from_now(seconds: int) -> datetime:
    return datetime.fromtimestamp(int(time.time()) + seconds, UTC)


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


async def run_ids(queue: JobQueue) -> list[str]:
    return sorted(await queue.redis.zrange(queue.keys.type_index("noop"), 0, -1))


# --- broker.schedule() ----------------------------------------------------------------------


async def test_by_object_and_by_name_store_the_job_the_api_would(
    broker: JobQueueBroker, queue: JobQueue
) -> None:
    noop = broker.find_task("noop")
    assert noop is not None
    fields: dict[str, Any] = {
        "every_seconds": 30, "data": {"progress_steps": 1}, "priority": "high", "attempts": 4,
    }  # fmt: skip
    by_object = await broker.schedule(noop, "by-object", **fields)
    by_name = await broker.schedule("noop", "by-name", **fields)
    assert by_object.spec == by_name.spec
    assert by_object.job == by_name.job
    api_job = REGISTRY.get("noop").build_spec(
        {"progress_steps": 1}, queue.config, priority="high", attempts=4
    )
    assert by_object.job == api_job
    assert (by_object.job.priority, by_object.job.attempts) == (Priority.HIGH, 4)
    stored = {s.id: s for s in await broker.schedules()}
    assert stored == {"by-object": by_object, "by-name": by_name}
    assert await queue.get_schedule("by-object") == by_object


async def test_taskiq_retry_labels_become_attempts_as_on_kiq(broker: JobQueueBroker) -> None:
    schedule = await broker.schedule(
        "noop", "retrying", every_seconds=60, retry_on_error=True, max_retries=5
    )
    assert schedule.job.attempts == 6  # the first run and five retries


async def test_racing_tickers_enqueue_exactly_one_job_per_tick(
    broker: JobQueueBroker, queue: JobQueue
) -> None:
    start = whole_second_from_now(100)
    noop = broker.find_task("noop")
    assert noop is not None
    await broker.schedule(noop, "by-object", every_seconds=10, start_at=start)
    await broker.schedule("noop", "by-name", every_seconds=10, start_at=start)
    clock = SettableClock(start.timestamp())
    tickers = [
        ScheduleTicker(JobQueue(queue.redis, queue.keys, queue.config, clock=clock))
        for _ in range(4)
    ]
    ticks = [ms(start) + i * 10_000 for i in range(5)]
    for tick in ticks:
        clock.now = tick / 1000
        await asyncio.gather(*(ticker.step() for ticker in tickers))
    expected = sorted(f"{sid}:{tick}" for sid in ("by-object", "by-name") for tick in ticks)
    assert await run_ids(queue) == expected
    for schedule_id in ("by-object", "by-name"):
        schedule = await queue.get_schedule(schedule_id)
        assert schedule.runs == len(ticks)
        assert schedule.next_run_at == datetime.fromtimestamp(ticks[-1] / 1000 + 10, UTC)


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_worker_processes_run_one_job_per_tick(
    broker: JobQueueBroker, queue: JobQueue, redis_url: str, tmp_path: Path
) -> None:
    start = whole_second_from_now(6)  # time for the workers to start
    noop = broker.find_task("noop")
    assert noop is not None
    await broker.schedule(noop, "each-second", every_seconds=1, start_at=start, limit=4)
    expected = [f"each-second:{ms(start) + i * 1000}" for i in range(4)]
    env = worker_env(redis_url, queue.keys.queue, worker_count=2)  # two racing tickers
    with running_worker(env, tmp_path / "worker.log"):
        await wait_until(lambda: all_done(queue, expected), timeout=40)
        await asyncio.sleep(1.5)  # one more tick's time: a limit-4 schedule must not fire it
    assert await run_ids(queue) == sorted(expected)
    assert {job.state for job in await queue.get_many(expected)} == {JobState.COMPLETED}
    schedule = await queue.get_schedule("each-second")
    assert (schedule.runs, schedule.next_run_at) == (4, None)


def next_local_noon(now: datetime) -> datetime:
    today = now.astimezone(BERLIN).date()
    for day in (today, today + timedelta(days=1)):
        noon = datetime.combine(day, clock_time(12), tzinfo=BERLIN)
        if noon > now:
            return noon
    raise AssertionError("unreachable")


async def test_cron_in_a_timezone_is_stored_with_its_next_local_run(
    broker: JobQueueBroker, queue: JobQueue
) -> None:
    before = datetime.now(UTC)
    schedule = await broker.schedule("noop", "noon", cron="0 12 * * *", timezone="Europe/Berlin")
    stored = await queue.get_schedule("noon")
    assert (stored.spec.cron, stored.spec.timezone) == ("0 12 * * *", "Europe/Berlin")
    assert stored.next_run_at == schedule.next_run_at == next_local_noon(before)


def python_fields(exc: Exception) -> list[str]:
    if isinstance(exc, ValidationError):
        return [".".join(str(part) for part in e["loc"]) for e in exc.errors()]
    assert isinstance(exc, InvalidRequestError)
    return [e["field"] for e in exc.details["errors"]]


@pytest.mark.parametrize(
    ("schedule_id", "fields", "body", "error", "field"),
    [
        (
            "both", {"cron": "* * * * *", "every_seconds": 5},
            {"cron": "* * * * *", "every_seconds": 5}, InvalidRequestError, "cron",
        ),
        ("neither", {}, {}, InvalidRequestError, "cron"),
        (
            "zone", {"cron": "* * * * *", "timezone": "Nowhere/City"},
            {"cron": "* * * * *", "timezone": "Nowhere/City"}, ValidationError, "timezone",
        ),
        ("cron", {"cron": "61 * * * *"}, {"cron": "61 * * * *"}, ValidationError, "cron"),
        ("zero", {"every_seconds": 0}, {"every_seconds": 0}, ValidationError, "every_seconds"),
        (
            "bounds",
            {"every_seconds": 5, "start_at": datetime(2030, 1, 2, tzinfo=UTC),
             "end_at": datetime(2030, 1, 1, tzinfo=UTC)},
            {"every_seconds": 5, "start_at": "2030-01-02T00:00:00Z",
             "end_at": "2030-01-01T00:00:00Z"},
            InvalidRequestError, "end_at",
        ),
        ("bad id!", {"every_seconds": 5}, {"every_seconds": 5}, InvalidRequestError, "id"),
    ],
)  # fmt: skip
async def test_bad_input_raises_what_the_api_refuses_with_422(
    broker: JobQueueBroker,
    queue: JobQueue,
    client: httpx.AsyncClient,
    schedule_id: str,
    fields: dict[str, Any],
    body: dict[str, Any],
    error: type[Exception],
    field: str,
) -> None:
    with pytest.raises(error) as caught:
        await broker.schedule("noop", schedule_id, **fields)
    assert python_fields(caught.value) == [field]
    response = await client.put(f"/schedules/{schedule_id}", json={"type": "noop", **body})
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["error"]["details"]["errors"]] == [field]
    assert await broker.schedules() == []


async def test_an_unknown_task_by_name_or_object_is_refused_as_the_api_refuses_its_type(
    broker: JobQueueBroker, client: httpx.AsyncClient
) -> None:
    @broker.task(task_name="plain-taskiq-task")
    async def plain() -> None:
        """A taskiq task that is no job type."""

    response = await client.put("/schedules/s", json={"type": "nope", "every_seconds": 5})
    api_error = response.json()["error"]
    for task in ("nope", plain):
        with pytest.raises(InvalidRequestError) as caught:
            await broker.schedule(task, "s", every_seconds=5)
        assert python_fields(caught.value) == ["type"]
        assert caught.value.code == api_error["code"]
    assert caught.value.message.startswith("unknown job type 'plain-taskiq-task'; known types:")
    assert await broker.schedules() == []


async def test_unschedule_removes_the_schedule_and_its_keys(
    broker: JobQueueBroker, queue: JobQueue
) -> None:
    await broker.schedule("noop", "gone", every_seconds=5)
    await queue.trigger_schedule("gone")  # a run list to remove too
    assert await queue.redis.exists(queue.keys.schedule_runs("gone"))
    await broker.unschedule("gone")
    assert await broker.schedules() == []
    assert not await queue.redis.exists(queue.keys.schedule("gone"))
    assert not await queue.redis.exists(queue.keys.schedule_runs("gone"))
    assert await queue.redis.zscore(queue.keys.schedules, "gone") is None
    with pytest.raises(ScheduleNotFoundError):
        await broker.unschedule("gone")


async def test_before_startup_the_broker_says_to_start_it(queue: JobQueue, redis_url: str) -> None:
    idle = JobQueueBroker(broker_settings(queue, redis_url), registry=load_job_types())
    for call in (
        idle.schedule("noop", "early", every_seconds=5),
        idle.schedules(),
        idle.unschedule("early"),
    ):
        with pytest.raises(RuntimeError, match=r"await broker\.startup\(\)"):
            await call


# --- taskiq's ScheduleSource ----------------------------------------------------------------


async def test_schedule_by_interval_cron_and_time_create_our_schedules(
    broker: JobQueueBroker, queue: JobQueue
) -> None:
    source = JobQueueScheduleSource(broker)
    noop = broker.find_task("noop")
    assert noop is not None
    await (
        noop.kicker()
        .with_schedule_id("minutely")
        .with_labels(priority="critical", attempts=2)
        .schedule_by_interval(source, 60, data={"progress_steps": 1})
    )
    before = datetime.now(UTC)
    await (
        noop.kicker()
        .with_schedule_id("noon")
        .schedule_by_cron(source, CronSpec(minutes=0, hours=12, offset="Europe/Berlin"))
    )
    at = whole_second_from_now(120)
    once = await noop.kicker().with_schedule_id("once").schedule_by_time(source, at)

    minutely, noon, one_off = [await queue.get_schedule(i) for i in ("minutely", "noon", "once")]
    assert (minutely.spec.every_seconds, minutely.spec.data) == (60, {"progress_steps": 1})
    assert (minutely.job.priority, minutely.job.attempts) == (Priority.CRITICAL, 2)
    assert (noon.spec.cron, noon.spec.timezone) == ("0 12 * * *", "Europe/Berlin")
    assert noon.next_run_at == next_local_noon(before)
    assert (one_off.spec.limit, one_off.next_run_at) == (1, at)

    listed = {task.schedule_id: task for task in await source.get_schedules()}
    assert set(listed) == {"minutely", "noon", "once"}
    assert (listed["minutely"].interval, listed["minutely"].kwargs) == (
        60,
        {"data": {"progress_steps": 1}},
    )
    assert (listed["noon"].cron, listed["noon"].cron_offset) == ("0 12 * * *", "Europe/Berlin")
    await once.unschedule()
    assert {s.id for s in await broker.schedules()} == {"minutely", "noon"}


async def test_a_taskiq_scheduler_on_the_source_sends_nothing(
    broker: JobQueueBroker, queue: JobQueue
) -> None:
    source = JobQueueScheduleSource(broker)
    await source.add_schedule(
        ScheduledTask(task_name="noop", labels={}, args=[], kwargs={}, interval=1)
    )
    [task] = await source.get_schedules()
    await TaskiqScheduler(broker, [source]).on_ready(source, task)
    assert await run_ids(queue) == []  # the queue's tickers fire it, not taskiq's scheduler


@pytest.mark.parametrize(
    ("scheduled", "field"),
    [
        ({"args": [1], "interval": 60}, "kwargs"),
        ({"kwargs": {"data": {}, "other": 1}, "interval": 60}, "kwargs"),
        ({"cron": "0 12 * * *", "cron_offset": timedelta(hours=1)}, "cron_offset"),
        ({"cron": "0 12 * * *", "interval": 60}, "cron"),
        ({"task_name": "nope", "interval": 60}, "type"),
    ],
)
async def test_what_cannot_carry_over_is_refused_by_name(
    broker: JobQueueBroker, scheduled: dict[str, Any], field: str
) -> None:
    task = ScheduledTask(
        **{"task_name": "noop", "labels": {}, "args": [], "kwargs": {}, **scheduled}
    )
    with pytest.raises(InvalidRequestError) as caught:
        await JobQueueScheduleSource(broker).add_schedule(task)
    assert python_fields(caught.value) == [field]
    assert await broker.schedules() == []


LABELLED = [
    {"interval": 60, "kwargs": {"data": {"progress_steps": 1}}, "labels": {"priority": "high"}},
    {"cron": "0 12 * * *", "cron_offset": "Europe/Berlin", "schedule_id": "noon"},
]


@pytest.fixture
async def labelled_broker(queue: JobQueue, redis_url: str) -> AsyncIterator[JobQueueBroker]:
    """A broker whose `noop` task carries LabelScheduleSource-style `schedule` labels; not
    started (the test starts it in taskiq scheduler's order)."""
    labelled = JobQueueBroker(broker_settings(queue, redis_url))

    async def noop(data: dict[str, Any]) -> None:
        """Stands in for the job type's task; never run here."""

    labelled.register_task(noop, task_name="noop", schedule=LABELLED, attempts=7)
    labelled.use_job_types(load_job_types())  # keeps the labelled task, adds the job types
    yield labelled
    if labelled.is_started:
        await labelled.shutdown()


async def test_schedule_labels_become_schedules_kept_as_they_run(
    labelled_broker: JobQueueBroker, queue: JobQueue
) -> None:
    source = JobQueueScheduleSource(labelled_broker)
    await source.startup()  # `taskiq scheduler` starts its sources before the broker
    await labelled_broker.startup()
    assert {t.schedule_id for t in await source.get_schedules()} == {"noop:0", "noon"}
    every_minute = await queue.get_schedule("noop:0")
    assert (every_minute.spec.every_seconds, every_minute.job.priority) == (60, Priority.HIGH)
    assert every_minute.job.attempts == 7  # the task's own label, as on each of its kiq()s
    assert (await queue.get_schedule("noon")).spec.timezone == "Europe/Berlin"

    assert every_minute.next_run_at is not None
    clock = SettableClock(every_minute.next_run_at.timestamp())
    await ScheduleTicker(JobQueue(queue.redis, queue.keys, queue.config, clock=clock)).step()
    ran = await queue.get_schedule("noop:0")
    assert ran.runs == 1
    again = JobQueueScheduleSource(labelled_broker)
    await again.startup()  # another process syncing the same labels
    assert await queue.get_schedule("noop:0") == ran  # its cadence and run count go on


async def test_the_tasks_own_labels_apply_by_object_and_by_name(
    labelled_broker: JobQueueBroker,
) -> None:
    await labelled_broker.startup()
    task = labelled_broker.find_task("noop")
    assert task is not None
    by_object = await labelled_broker.schedule(task, "by-object", every_seconds=60)
    by_name = await labelled_broker.schedule("noop", "by-name", every_seconds=60)
    assert by_object.job.attempts == by_name.job.attempts == 7
    overridden = await labelled_broker.schedule("noop", "mine", every_seconds=60, attempts=2)
    assert overridden.job.attempts == 2
