"""Enqueue, inspect, cancel and retry jobs. Handlers validate, call the queue layer, shape."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status
from sse_starlette import EventSourceResponse

from service.api.deps import Authenticated, QueueDep, SettingsDep
from service.api.errors import responses
from service.api.events import job_event_stream
from service.api.routing import TemplateRoute
from service.api.schemas import (
    JOB_ID_PATTERN,
    JOB_TYPE_MAX_LENGTH,
    BulkEnqueueRequest,
    BulkEnqueueResponse,
    EnqueuedJob,
    EnqueueOptions,
    EnqueueRequest,
    JobDetail,
    JobPublic,
    JobTypePublic,
    JobTypesPublic,
    ProgressPublic,
    non_unicode_fields,
)
from service.jobs.registry import REGISTRY
from service.queue.errors import InvalidJobError, JobQueueError
from service.queue.flow_control import FlowControl
from service.queue.models import JobSpec
from service.queue.queue import JobQueue

router = APIRouter(tags=["jobs"], dependencies=[Authenticated], route_class=TemplateRoute)
type_router = APIRouter(tags=["jobs"], dependencies=[Authenticated], route_class=TemplateRoute)

JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="The job's id.")]
TypeName = Annotated[
    str, Path(min_length=1, max_length=JOB_TYPE_MAX_LENGTH, description="A registered job type.")
]
LOG_LINES = 50
IDEMPOTENT_OK: dict[int | str, dict[str, Any]] = {
    200: {"model": EnqueuedJob, "description": "The idempotency key was seen: the existing job"}
}
SSE_OK: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
        "description": "`status`, `progress` and `log` events, then `end` with the finished job.",
    }
}


def build_spec(queue: JobQueue, type_name: str, options: EnqueueOptions) -> JobSpec:
    """Validate a request against its job type (404 unknown type, 422 bad data)."""
    job_type = REGISTRY.get(type_name)
    require_unicode(options.data)
    return job_type.build_spec(options.data, queue.config, options.to_options())


def require_unicode(data: dict[str, Any]) -> None:
    """422 naming each place in `data` that holds text with no UTF-8 form."""
    bad = non_unicode_fields(data)
    if bad:
        message = "text must be valid Unicode (it holds a lone surrogate escape like \\ud800)"
        raise InvalidJobError(
            f"invalid data: {', '.join(bad)}: {message}",
            {"errors": [{"field": field, "message": message} for field in bad]},
        )


async def _enqueue(queue: JobQueue, spec: JobSpec, response: Response) -> EnqueuedJob:
    result = await queue.enqueue(spec)
    response.status_code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
    return EnqueuedJob.from_result(result.job, result.created, result.deduplicated)


@router.post(
    "/jobs/enqueue",
    status_code=status.HTTP_201_CREATED,
    responses=IDEMPOTENT_OK | responses(404, 413),
)
async def enqueue(body: EnqueueRequest, queue: QueueDep, response: Response) -> EnqueuedJob:
    """Enqueue a job: 201 with the new job; 200 with the existing one if the idempotency key
    was seen before or the dedupe key led to it (then `deduplicated` is true)."""
    return await _enqueue(queue, build_spec(queue, body.type, body), response)


@router.post("/jobs/enqueue/bulk", status_code=status.HTTP_201_CREATED, responses=responses(413))
async def enqueue_bulk(body: BulkEnqueueRequest, queue: QueueDep) -> BulkEnqueueResponse:
    """Enqueue up to 1,000 jobs in one round trip; if any is invalid, none is enqueued."""
    specs = _bulk_specs(queue, body.jobs)
    results = await queue.enqueue_many(specs)
    items = [EnqueuedJob.from_result(r.job, r.created, r.deduplicated) for r in results]
    return BulkEnqueueResponse(items=items, created=sum(r.created for r in results))


def _bulk_specs(queue: JobQueue, jobs: list[EnqueueRequest]) -> list[JobSpec]:
    specs: list[JobSpec] = []
    errors: list[dict[str, Any]] = []
    for index, job in enumerate(jobs):
        try:
            specs.append(build_spec(queue, job.type, job))
        except JobQueueError as exc:
            errors += _indexed_errors(index, exc)
    if errors:
        raise InvalidJobError(
            f"{len(errors)} invalid field(s) in the bulk request; nothing was enqueued",
            {"errors": errors},
        )
    return specs


def _indexed_errors(index: int, exc: JobQueueError) -> list[dict[str, Any]]:
    found = exc.details.get("errors") or [{"field": "type", "message": exc.message}]
    return [{**err, "field": f"jobs.{index}.{err['field']}"} for err in found]


@router.get("/jobs/types")
async def job_types(queue: QueueDep) -> JobTypesPublic:
    """Registered job types with their defaults and the JSON schema of their `data`."""
    flow = await FlowControl(queue).state()
    return JobTypesPublic(items=[JobTypePublic.from_type(t, flow) for t in REGISTRY.all()])


@router.get("/jobs/{id}/status", responses=responses(404))
async def job_status(id: JobId, queue: QueueDep) -> JobPublic:
    """A job's status, attempts and timestamps; `result` or `error` once it has finished."""
    return JobPublic.from_job(await queue.get(id))


@router.get("/jobs/{id}/progress", responses=responses(404))
async def job_progress(id: JobId, queue: QueueDep) -> ProgressPublic:
    """How far a running job is, with its newest log lines."""
    job = await queue.get(id)
    return ProgressPublic(
        id=job.id,
        status=job.state,
        progress=min(max(job.progress, 0.0), 100.0),
        message=job.progress_message,
        logs=await queue.logs(id, LOG_LINES),
    )


@router.get(
    "/jobs/{id}/events",
    responses=SSE_OK | responses(404),
    response_class=EventSourceResponse,
)
async def job_events(
    id: JobId,
    queue: QueueDep,
    settings: SettingsDep,
    logs: Annotated[
        bool,
        Query(description="Send the job's kept log lines first, and every line exactly once."),
    ] = False,
) -> EventSourceResponse:
    """Server-Sent Events: the current status, then every change, until the job ends.

    Events: `status` {id, status, progress, message}, `progress` {id, status, progress,
    message}, `log` {id, index, line} (index counts the job's lines from 1), then `end` with
    the finished job. `error` {code, message, details} ends the stream early when Redis goes
    away; so does the time limit: reconnect in both cases (with `logs`, drop lines whose index
    you printed already).
    """
    await queue.get(id)  # 404 before the stream starts, not inside it
    return EventSourceResponse(
        job_event_stream(queue, id, settings.sse_max_seconds, settings.sse_ping_seconds, logs),
        # Not int(): a sub-second setting would become 0, which turns pings off altogether.
        ping=settings.sse_ping_seconds,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/jobs/{id}", responses=responses(404))
async def job_detail(id: JobId, queue: QueueDep) -> JobDetail:
    """Everything about a job: data, result, error with traceback, logs and state changes;
    for a flow job its `parent_id`, and for a flow parent its `children` with their status,
    `waiting_for` (children not ended yet) and the children's results and failures."""
    job = await queue.get(id)
    # A flow parent's children, results and failures: two more round trips, parents only.
    children = await queue.children(id) if job.waiting_for is not None else None
    return JobDetail.from_job_and_logs(job, await queue.logs(id, LOG_LINES), children)


@router.delete("/jobs/{id}", responses=responses(404, 409))
async def cancel_job(id: JobId, queue: QueueDep) -> JobPublic:
    """Cancel a delayed, pending or processing job; 409 if it has already finished."""
    return JobPublic.from_job(await queue.cancel(id))


@router.post("/jobs/{id}/retry", responses=responses(404, 409))
async def retry_job(id: JobId, queue: QueueDep) -> JobPublic:
    """Run a failed or cancelled job again from its first attempt."""
    return JobPublic.from_job(await queue.retry(id))


@type_router.post(
    "/{type}/enqueue",
    status_code=status.HTTP_201_CREATED,
    responses=IDEMPOTENT_OK | responses(404, 413),
)
async def enqueue_typed(
    type: TypeName,
    body: EnqueueOptions,
    queue: QueueDep,
    response: Response,
) -> EnqueuedJob:
    """Enqueue a job of the type in the path; unknown types answer 404 listing the known ones."""
    return await _enqueue(queue, build_spec(queue, type, body), response)
