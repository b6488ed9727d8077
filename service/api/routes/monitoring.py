"""Queue-wide views: stats, health, workers, job types, the per-state lists and /metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from service.api.deps import Authenticated, QueueDep, SettingsDep
from service.api.errors import responses
from service.api.routes.jobs import TypeName
from service.api.routing import TemplateRoute
from service.api.schemas import (
    HealthPublic,
    JobPage,
    JobPublic,
    StatsPublic,
    WorkerPublic,
    WorkersPublic,
)
from service.jobs.registry import REGISTRY
from service.metrics.collector import collect
from service.metrics.health import check_health
from service.metrics.prometheus import render_prometheus
from service.queue.models import Job, Page
from service.queue.states import JobState

router = APIRouter(tags=["monitoring"], dependencies=[Authenticated], route_class=TemplateRoute)

Limit = Annotated[int, Query(ge=1, le=500, description="Jobs per page.")]
# Cursors are opaque to clients, but their shape is published so a malformed one is a plain
# validation error: sorted-set lists page by "score:id", the active list by an offset.
CURSOR_DOC = "`next_cursor` of the previous page; omit for the first."
# Scores are non-negative integers below 2^53 (16 digits); queue.py checks the value too.
Cursor = Annotated[
    str | None, Query(pattern=r"^[0-9]{1,16}(:[A-Za-z0-9_.:-]{0,128})?$", description=CURSOR_DOC)
]
OffsetCursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,9}$", description=CURSOR_DOC)]
StatusFilter = Annotated[JobState | None, Query(description="Only jobs in this status.")]
DEFAULT_LIMIT = 50


def _page(page: Page[Job]) -> JobPage:
    return JobPage(items=[JobPublic.from_job(j) for j in page.items], next_cursor=page.next_cursor)


@router.get("/jobs/stats")
async def stats(queue: QueueDep) -> StatsPublic:
    """Jobs per status, pending per priority, per type; throughput and latency of late."""
    return StatsPublic.from_snapshot(await collect(queue))


@router.get(
    "/jobs/health",
    responses={503: {"model": HealthPublic, "description": "At least one check is unhealthy"}},
)
async def health(queue: QueueDep, settings: SettingsDep) -> JSONResponse:
    """`healthy`, `degraded` or `unhealthy`, with each check; 503 when unhealthy."""
    report = await check_health(queue, settings)
    body = HealthPublic.model_validate(report.model_dump())
    status = 503 if body.status == "unhealthy" else 200
    return JSONResponse(body.model_dump(mode="json"), status_code=status)


@router.get("/jobs/workers")
async def workers(queue: QueueDep) -> WorkersPublic:
    """Live workers with their heartbeat, counters and current jobs."""
    return WorkersPublic(items=[WorkerPublic.from_info(w) for w in await queue.workers()])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(queue: QueueDep, settings: SettingsDep) -> Response:
    """Prometheus exposition of the same numbers the metrics task sends to CloudWatch."""
    snapshot = await collect(queue)
    memory = await queue.memory()
    body, content_type = render_prometheus(snapshot, settings.queue_name, memory=memory)
    return Response(content=body, media_type=content_type)


def _add_state_list(path_word: str, state: JobState, order: str) -> None:
    async def list_state(
        queue: QueueDep, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
    ) -> JobPage:
        return _page(await queue.list_jobs(state, limit, cursor))

    async def list_active(
        queue: QueueDep, limit: Limit = DEFAULT_LIMIT, cursor: OffsetCursor = None
    ) -> JobPage:
        return _page(await queue.list_jobs(state, limit, cursor))

    endpoint = list_active if state is JobState.PROCESSING else list_state

    endpoint.__name__ = f"list_{path_word}"
    endpoint.__doc__ = f"Jobs {state.value}, {order}; paginated with `limit` and `cursor`."
    router.add_api_route(
        f"/jobs/{path_word}",
        endpoint,
        methods=["GET"],
        responses=responses(),
        summary=f"List {path_word} jobs",
    )


for _word, _state, _order in (
    ("pending", JobState.PENDING, "in the order they will run"),
    ("active", JobState.PROCESSING, "running ones by start time, then reserved ones"),
    ("delayed", JobState.DELAYED, "by due time"),
    ("completed", JobState.COMPLETED, "newest first"),
    ("failed", JobState.FAILED, "newest first"),
    ("cancelled", JobState.CANCELLED, "newest first"),
    ("waiting-children", JobState.WAITING_CHILDREN, "flow parents, the oldest first"),
):
    _add_state_list(_word, _state, _order)


@router.get("/jobs/{type}/jobs", responses=responses(404))
async def jobs_of_type(
    type: TypeName,
    queue: QueueDep,
    status: StatusFilter = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> JobPage:
    """Jobs of one type, newest first, optionally only those in `status`.

    With a `status` filter a page may hold fewer than `limit` jobs while `next_cursor` is set:
    keep following the cursor until it is null.
    """
    REGISTRY.get(type)  # 404 listing the known types
    return _page(await queue.list_by_type(type, status, limit, cursor))
