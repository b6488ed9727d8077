"""taskiq's ScheduleSource on the queue's own schedules, for code written against taskiq's.

`task.kicker().schedule_by_cron(source, ...)` (and `schedule_by_interval`, `schedule_by_time`),
`source.add_schedule(ScheduledTask(...))`, `source.delete_schedule(id)` and the tasks'
`schedule=[...]` labels that taskiq's LabelScheduleSource reads all become stored schedules
(service/queue/schedules.py), checked as `PUT /schedules/{id}` checks them and fired by every
API and worker process, one job per tick.

Why an adapter at all: taskiq's scheduler is one more process that itself decides when to send,
so it loses ticks while it is down and doubles them when two run; our schedules replace it.
The adapter keeps users' scheduling code unchanged while the firing moves into the queue. A
`taskiq scheduler` pointed at this source (to keep a deploy's shape) sends nothing: `pre_send`
cancels every send, so the scheduler only syncs the labels at its startup and can stop or
restart at any time without a tick lost or doubled.

What does not carry over: a task's `args` and keywords other than `data` (a job type takes one
payload, `kiq(data=...)`), a fixed `task_id` (each run's id is `<schedule id>:<tick ms>`), and
a `cron_offset` given as a timedelta (a fixed offset has no daylight-saving rules; name an
IANA zone). Each is refused by name rather than dropped.
"""

from __future__ import annotations

import logging
from datetime import UTC, timedelta
from typing import Any

from taskiq import ScheduleSource
from taskiq.exceptions import ScheduledTaskCancelledError
from taskiq.scheduler.scheduled_task import ScheduledTask

from service.queue.errors import InvalidRequestError
from service.queue.options import JobOptions
from service.queue.schedules import Schedule, ScheduleNotFoundError, ScheduleSpec
from service.worker.taskiq_broker import JobQueueBroker, taskiq_retry_labels

log = logging.getLogger(__name__)

# The label LabelScheduleSource reads a task's schedules from.
SCHEDULE_LABEL = "schedule"


class JobQueueScheduleSource(ScheduleSource):
    """Schedules added, listed and deleted through taskiq's interface live in the queue."""

    def __init__(self, broker: JobQueueBroker, *, from_labels: bool = True) -> None:
        self.broker = broker
        # The broker starts after its sources under `taskiq scheduler`: labels are stored at
        # startup when it is up, else on the first get_schedules() (which follows its start).
        self._labels_pending = from_labels

    async def startup(self) -> None:
        """Store the schedules the tasks' `schedule` labels declare, once the broker is up."""
        if self._labels_pending and self.broker.is_started:
            await self.sync_labels()

    async def sync_labels(self) -> list[Schedule]:
        """Store every `schedule=[{"cron" | "interval" | "time": ..., ...}]` label entry of the
        broker's tasks (LabelScheduleSource's format) as a schedule; the stored ones.

        The id is the entry's `schedule_id`, else `<task name>:<position>`, so every process
        that syncs writes the same schedules. One already stored as declared is left as it is:
        a restart must not move its next tick or reset its run count. A label removed from the
        code leaves its schedule stored; `delete_schedule` removes it.
        """
        self._labels_pending = False
        stored = []
        for name, task in self.broker.get_all_tasks().items():
            if task.broker is not self.broker:
                continue  # another broker's task (LabelScheduleSource skips these too)
            own = {k: v for k, v in task.labels.items() if k != SCHEDULE_LABEL}
            for position, entry in enumerate(task.labels.get(SCHEDULE_LABEL, [])):
                scheduled = ScheduledTask(
                    task_name=name,
                    labels={**entry.get("labels", {}), **own},  # task labels win, as there
                    schedule_id=entry.get("schedule_id", f"{name}:{position}"),
                    args=entry.get("args", []),
                    kwargs=entry.get("kwargs", {}),
                    cron=entry.get("cron"),
                    cron_offset=entry.get("cron_offset"),
                    time=entry.get("time"),
                    interval=entry.get("interval"),
                )
                stored.append(await self._store(scheduled, keep_unchanged=True))
        return stored

    async def get_schedules(self) -> list[ScheduledTask]:
        """The stored schedules, as taskiq describes them (a one-off `time` reads as the
        interval it is stored with)."""
        if self._labels_pending:
            await self.sync_labels()
        return [scheduled_task(schedule) for schedule in await self.broker.schedules()]

    async def add_schedule(self, schedule: ScheduledTask) -> None:
        """Create or replace the schedule `schedule.schedule_id`."""
        await self._store(schedule, keep_unchanged=False)

    async def delete_schedule(self, schedule_id: str) -> None:
        """Remove a schedule; ScheduleNotFoundError if there is none."""
        await self.broker.unschedule(schedule_id)

    def pre_send(self, task: ScheduledTask) -> None:
        """Cancel the send of a `taskiq scheduler` reading this source: the queue fires it."""
        log.debug("schedule %r is fired by the queue, not by taskiq scheduler", task.schedule_id)
        raise ScheduledTaskCancelledError

    async def _store(self, scheduled: ScheduledTask, *, keep_unchanged: bool) -> Schedule:
        spec = schedule_spec(scheduled)
        if keep_unchanged:
            try:
                current = await self.broker.queue.get_schedule(scheduled.schedule_id)
            except ScheduleNotFoundError:
                pass
            else:
                if current.spec == spec:
                    return current
        return await self.broker.store_schedule(scheduled.schedule_id, spec)


def schedule_spec(scheduled: ScheduledTask) -> ScheduleSpec:
    """Our ScheduleSpec for a taskiq ScheduledTask; InvalidRequestError naming what cannot
    carry over, pydantic's ValidationError for what ScheduleSpec refuses."""
    if scheduled.args or set(scheduled.kwargs) - {"data"}:
        _refuse("kwargs", "a job type takes one payload, as kiq(data={...}): pass data= only")
    options = JobOptions.from_labels(taskiq_retry_labels(scheduled.labels))
    return ScheduleSpec(
        type=scheduled.task_name,
        data=scheduled.kwargs.get("data") or {},
        options=options,
        **_cadence(scheduled),
    )


def _cadence(scheduled: ScheduledTask) -> dict[str, Any]:
    given = [scheduled.cron, scheduled.interval, scheduled.time]
    if sum(value is not None for value in given) != 1:
        _refuse("cron", "give exactly one of cron, interval and time")
    if scheduled.cron is not None:
        if isinstance(scheduled.cron_offset, timedelta):
            _refuse("cron_offset", "a fixed offset has no daylight-saving rules: name a zone")
        return {"cron": scheduled.cron, "timezone": scheduled.cron_offset or "UTC"}
    if scheduled.interval is not None:
        interval = scheduled.interval
        seconds = interval if isinstance(interval, int) else int(interval.total_seconds())
        return {"every_seconds": seconds}
    assert scheduled.time is not None
    # One run at that time (taskiq reads a naive time as UTC): a one-tick schedule, listed
    # and deletable until it has run, as taskiq's one-off schedules are.
    at = scheduled.time if scheduled.time.tzinfo else scheduled.time.replace(tzinfo=UTC)
    return {"every_seconds": 1, "start_at": at, "limit": 1}


def scheduled_task(schedule: Schedule) -> ScheduledTask:
    """A stored schedule as taskiq's ScheduledTask (its job's options as kiq() labels)."""
    spec, job = schedule.spec, schedule.job
    labels: dict[str, Any] = {"priority": int(job.priority), "attempts": job.attempts}
    if job.timeout_seconds is not None:
        labels["timeout"] = job.timeout_seconds
    return ScheduledTask(
        task_name=spec.type,
        labels=labels,
        args=[],
        kwargs={"data": spec.data},
        schedule_id=schedule.id,
        cron=spec.cron,
        cron_offset=spec.timezone if spec.cron is not None else None,
        interval=spec.every_seconds,
    )


def _refuse(field: str, message: str) -> None:
    raise InvalidRequestError(
        f"{field}: {message}", {"errors": [{"field": field, "in": "body", "message": message}]}
    )
