"""`GET /jobs`: search and list jobs across states and types, for the dashboard and the CLI;
and bulk cancel, retry and delete of a selection or of everything a search matches."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from service.api.deps import Authenticated, QueueDep
from service.api.errors import responses
from service.api.routing import TemplateRoute
from service.api.schemas import JOB_ID_PATTERN, JOB_TYPE_MAX_LENGTH, STRICT, PriorityName
from service.queue.errors import ErrorCategory, InvalidRequestError, JobQueueError
from service.queue.models import Job
from service.queue.queue import JobQueue, now_ms
from service.queue.search import JobFilter, parse_time, search
from service.queue.states import JobState, Priority

router = APIRouter(tags=["jobs"], dependencies=[Authenticated], route_class=TemplateRoute)

# Failed jobs' errors are cut to this in lists; GET /jobs/{id} has the whole text.
ERROR_CHARS = 200
MAX_BULK_IDS = 1000
# A filter's bulk action changes at most this many jobs per call (repeat to go on), and
# reports at most SKIPPED_SHOWN of the jobs it left alone.
MAX_BULK_MATCHES = 10_000
SKIPPED_SHOWN = 100
TIME_DOC = "ISO-8601 with a time zone, or epoch milliseconds; on creation time."


class JobSummary(BaseModel):
    """One row of a job list."""

    id: str
    type: str
    status: JobState
    priority: PriorityName
    attempts_made: int
    max_attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    reserved: bool = Field(description="Processing, but prefetched: its code has not started.")
    runs_at: datetime | None = Field(description="When a delayed job becomes due.")
    error: str | None = Field(description=f"A failed job's error, cut to {ERROR_CHARS} chars.")
    wait_ms: int | None = Field(description="Due to start (or until now, still waiting).")
    run_ms: int | None = Field(description="Start to finish (or until now, still running).")
    group: str | None = Field(default=None, description="Its fair-share group, if any.")

    @classmethod
    def from_job(cls, job: Job, now: int) -> JobSummary:
        """The list row of a queue-layer job at `now` (epoch ms)."""
        due = _ms(job.scheduled_for)
        # A reserved job still waits (in its worker); an earlier attempt's start does not count.
        started = _ms(job.started_at) if job.started_at and not job.reserved else None
        finished = _ms(job.finished_at) if job.finished_at else None
        waiting = job.state in (JobState.PENDING, JobState.DELAYED) or job.reserved
        wait_end = started if started is not None else (now if waiting else None)
        run_end = finished if finished is not None else now
        return cls(
            id=job.id,
            type=job.type,
            status=job.state,
            priority=Priority(job.priority).label,
            attempts_made=job.attempts_made,
            max_attempts=job.max_attempts,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            reserved=job.reserved,
            runs_at=job.scheduled_for if job.state is JobState.DELAYED else None,
            error=job.error[:ERROR_CHARS] if job.error else None,
            wait_ms=max(0, wait_end - due) if wait_end is not None else None,
            run_ms=max(0, run_end - started) if started is not None else None,
            group=job.group,
        )


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class JobSummaryPage(BaseModel):
    """One page of a search; pass `next_cursor` as `cursor` for the next (null: the last).
    A page may hold fewer than `limit` jobs while `next_cursor` is set."""

    items: list[JobSummary]
    next_cursor: str | None


class JobSearch(BaseModel):
    """The filter of a search (the query parameters of `GET /jobs`)."""

    state: JobState | None = None
    type: str | None = Field(default=None, min_length=1, max_length=JOB_TYPE_MAX_LENGTH)
    priority: PriorityName | None = None
    since: str | None = Field(default=None, max_length=40, description=TIME_DOC)
    until: str | None = Field(default=None, max_length=40, description=TIME_DOC)
    q: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="An exact job id or idempotency key, or text in the job's data or error "
        "(text search reads a bounded window of jobs per page).",
    )

    def to_filter(self) -> JobFilter:
        """The queue-layer filter; 422 naming `since` or `until` when one is not a time."""
        return JobFilter(
            state=self.state,
            type=self.type,
            priority=Priority.parse(self.priority) if self.priority else None,
            since_ms=_time_param("since", self.since),
            until_ms=_time_param("until", self.until),
            text=self.q,
        )


def _time_param(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        message = f"not a time: {exc}; {TIME_DOC}"
        raise InvalidRequestError(
            f"{name} {value!r} is {message}",
            {"errors": [{"field": name, "in": "query", "message": message}]},
        ) from exc


Cursor = Annotated[
    str | None,
    Query(
        pattern=r"^[0-9]{1,16}:[A-Za-z0-9_.:-]{1,128}$",
        description="`next_cursor` of the previous page; omit for the first.",
    ),
]


@router.get("/jobs", responses=responses())
async def list_jobs(
    queue: QueueDep,
    filters: Annotated[JobSearch, Query()],
    sort: Annotated[Literal["created", "-created"], Query(description="By creation.")] = (
        "-created"
    ),
    limit: Annotated[int, Query(ge=1, le=500, description="Jobs per page.")] = 50,
    cursor: Cursor = None,
) -> JobSummaryPage:
    """Jobs of every state and type, newest first unless `sort=created`, filtered by `state`,
    `type`, `priority`, creation time (`since`, `until`) and `q`."""
    page = await search(queue, filters.to_filter(), limit, cursor, newest_first=sort != "created")
    now = now_ms(queue.clock)
    return JobSummaryPage(
        items=[JobSummary.from_job(job, now) for job in page.items], next_cursor=page.next_cursor
    )


class BulkRequest(BaseModel):
    """Jobs to act on: listed by id, or everything a search filter matches."""

    model_config = STRICT

    ids: list[Annotated[str, Field(pattern=JOB_ID_PATTERN)]] | None = Field(
        default=None, min_length=1, max_length=MAX_BULK_IDS
    )
    filter: JobSearch | None = None
    dry_run: bool = Field(default=False, description="Only count the matching jobs.")


class Skipped(BaseModel):
    """A job a bulk action left alone, and why."""

    id: str
    reason: str


class BulkResult(BaseModel):
    """What a bulk action matched and changed."""

    matched: int
    changed: int
    skipped: list[Skipped] = Field(description=f"At most {SKIPPED_SHOWN} of the jobs left alone.")


async def _matching_ids(queue: JobQueue, body: BulkRequest) -> list[str]:
    if (body.ids is None) == (body.filter is None):
        message = "give exactly one of ids and filter"
        raise InvalidRequestError(
            message, {"errors": [{"field": "ids", "in": "body", "message": message}]}
        )
    if body.ids is not None:
        return list(dict.fromkeys(body.ids))
    assert body.filter is not None
    where = body.filter.to_filter()
    ids: list[str] = []
    cursor: str | None = None
    while len(ids) < MAX_BULK_MATCHES:
        page = await search(queue, where, 500, cursor)
        ids += [job.id for job in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    return ids[:MAX_BULK_MATCHES]


async def _bulk(
    queue: JobQueue, body: BulkRequest, verb: Literal["cancel", "retry", "delete"]
) -> BulkResult:
    ids = await _matching_ids(queue, body)
    if body.dry_run:
        return BulkResult(matched=len(ids), changed=0, skipped=[])
    action = {"cancel": queue.cancel, "retry": queue.retry, "delete": queue.delete}[verb]
    changed = 0
    skipped: list[Skipped] = []
    for job_id in ids:
        try:
            await action(job_id)
            changed += 1
        except JobQueueError as exc:
            if exc.category not in (ErrorCategory.NOT_FOUND, ErrorCategory.CONFLICT):
                raise
            if len(skipped) < SKIPPED_SHOWN:
                skipped.append(Skipped(id=job_id, reason=exc.message))
    return BulkResult(matched=len(ids), changed=changed, skipped=skipped)


@router.post("/jobs/bulk/cancel", responses=responses(413))
async def bulk_cancel(body: BulkRequest, queue: QueueDep) -> BulkResult:
    """Cancel the listed or matching jobs that are delayed, pending or processing."""
    return await _bulk(queue, body, "cancel")


@router.post("/jobs/bulk/retry", responses=responses(413))
async def bulk_retry(body: BulkRequest, queue: QueueDep) -> BulkResult:
    """Run the listed or matching failed or cancelled jobs again from their first attempt."""
    return await _bulk(queue, body, "retry")


@router.post("/jobs/bulk/delete", responses=responses(413))
async def bulk_delete(body: BulkRequest, queue: QueueDep) -> BulkResult:
    """Delete the listed or matching finished jobs with their logs; live jobs are skipped
    (cancel them first)."""
    return await _bulk(queue, body, "delete")
