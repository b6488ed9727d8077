"""Schedules (repeatable jobs): create or replace, list, inspect, delete, pause, resume and
trigger. Ticks are fired by every API and worker process (service/queue/schedules.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from pydantic import BaseModel, Field

from service.api.deps import Authenticated, QueueDep
from service.api.errors import responses
from service.api.routes.jobs import require_unicode
from service.api.routing import TemplateRoute
from service.jobs.registry import REGISTRY
from service.queue.schedules import (
    SCHEDULE_ID_PATTERN,
    Schedule,
    ScheduleSpec,
    upcoming_runs,
)
from service.queue.states import JobState

router = APIRouter(tags=["schedules"], dependencies=[Authenticated], route_class=TemplateRoute)

ScheduleId = Annotated[str, Path(pattern=SCHEDULE_ID_PATTERN, description="The schedule's id.")]
UPCOMING = 5


class RunPublic(BaseModel):
    """One of a schedule's newest runs; state null once retention removed the job."""

    job_id: str
    state: JobState | None


class ScheduleDetail(Schedule):
    """A schedule with its next run times and its newest runs."""

    upcoming: list[datetime] = Field(description="The next five run times (fewer if it ends).")
    last_runs: list[RunPublic] = Field(description="Newest first.")


class TriggeredRun(BaseModel):
    """The job a trigger enqueued."""

    job_id: str


async def _detail(queue: QueueDep, schedule: Schedule) -> ScheduleDetail:
    jobs = {job.id: job for job in await queue.get_many(schedule.last_run_ids)}
    ticks = upcoming_runs(schedule, UPCOMING)
    runs = [
        RunPublic(job_id=job_id, state=jobs[job_id].state if job_id in jobs else None)
        for job_id in schedule.last_run_ids
    ]
    return ScheduleDetail(**schedule.model_dump(), upcoming=ticks, last_runs=runs)


@router.put(
    "/schedules/{id}",
    status_code=status.HTTP_201_CREATED,
    responses=responses(413) | {200: {"model": ScheduleDetail, "description": "Replaced"}},
)
async def put_schedule(
    id: ScheduleId, body: ScheduleSpec, queue: QueueDep, response: Response
) -> ScheduleDetail:
    """Create (201) or replace (200) a schedule; its job is checked like an enqueue's."""
    require_unicode(body.data)
    job = REGISTRY.schedule_job(body, queue.config)
    schedule, created = await queue.put_schedule(id, body, job)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return await _detail(queue, schedule)


@router.get("/schedules")
async def list_schedules(queue: QueueDep) -> list[Schedule]:
    """Every schedule, soonest next run first (paused and ended ones last)."""
    return await queue.list_schedules()


@router.get("/schedules/{id}", responses=responses(404))
async def get_schedule(id: ScheduleId, queue: QueueDep) -> ScheduleDetail:
    """One schedule, its next five run times and its newest runs with their states."""
    return await _detail(queue, await queue.get_schedule(id))


@router.delete("/schedules/{id}", status_code=status.HTTP_204_NO_CONTENT, responses=responses(404))
async def delete_schedule(id: ScheduleId, queue: QueueDep) -> None:
    """Remove a schedule; jobs it already enqueued stay."""
    await queue.delete_schedule(id)


@router.post("/schedules/{id}/pause", responses=responses(404))
async def pause_schedule(id: ScheduleId, queue: QueueDep) -> ScheduleDetail:
    """Stop the cadence; nothing runs until resumed (missed ticks are not caught up)."""
    return await _detail(queue, await queue.pause_schedule(id))


@router.post("/schedules/{id}/resume", responses=responses(404))
async def resume_schedule(id: ScheduleId, queue: QueueDep) -> ScheduleDetail:
    """Restart the cadence from now."""
    return await _detail(queue, await queue.pause_schedule(id, paused=False))


@router.post(
    "/schedules/{id}/trigger", status_code=status.HTTP_201_CREATED, responses=responses(404)
)
async def trigger_schedule(id: ScheduleId, queue: QueueDep) -> TriggeredRun:
    """Enqueue one run now, outside the cadence (not counted against `limit`)."""
    return TriggeredRun(job_id=await queue.trigger_schedule(id))
