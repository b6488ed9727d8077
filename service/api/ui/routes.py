"""Routes of the web dashboard: the page, its static assets, and the data only it needs.

The page is static and public (it holds no data and no key); everything it shows comes from the
authenticated JSON API, which the browser calls with the key the operator typed in.
"""

from __future__ import annotations

import hashlib
import mimetypes
from pathlib import Path
from typing import Annotated, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from service.api.deps import Authenticated, QueueDep, SettingsDep
from service.api.errors import responses
from service.api.routes import history
from service.api.routes.schedules import RunPublic
from service.api.ui.events import queue_event_stream
from service.queue.schedules import Schedule
from service.queue.states import JobState

router = APIRouter(tags=["dashboard"])
# The history endpoint lives under /jobs for API clients, but only the dashboard needs it yet:
# it comes and goes with the dashboard (and needs no edit of app.py's router list).
router.include_router(history.router)

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"

# Strict CSP: only our own scripts, styles and API. No 'unsafe-inline' anywhere, so even if job
# data slipped into the DOM as markup it could not run. Inline SVG is built with DOM calls.
CONTENT_SECURITY_POLICY: Final = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

# File names are not content-hashed (no build step), so browsers must revalidate every time;
# the ETag makes that a cheap 304 instead of a re-download.
STATIC_CACHE_CONTROL: Final = "no-cache"

# Module scripts must be served as JavaScript or the browser refuses them; the OS MIME table
# on slim images may not know these types.
MEDIA_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
}


def etag_for(path: Path) -> str:
    """An ETag from the file's content.

    Not from mtime and size: wheels are built reproducibly (every mtime is the same fixed
    date), so an edit that keeps a file's size would otherwise be served as "not modified".
    The files are a few kilobytes; hashing them per request costs microseconds.
    """
    return '"' + hashlib.sha256(path.read_bytes()).hexdigest()[:32] + '"'


def _static_response(request: Request, path: Path) -> Response:
    etag = etag_for(path)
    headers = {**SECURITY_HEADERS, "Cache-Control": STATIC_CACHE_CONTROL, "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    media_type = MEDIA_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    return FileResponse(path, media_type=media_type or "application/octet-stream", headers=headers)


def _not_found(message: str) -> Response:
    # Same error shape as the rest of the API.
    return Response(
        content=f'{{"error": {{"code": "not_found", "message": "{message}", "details": {{}}}}}}',
        status_code=404,
        media_type="application/json",
        headers=SECURITY_HEADERS,
    )


@router.api_route("/ui", methods=["GET", "HEAD"], include_in_schema=False)
async def dashboard(request: Request) -> Response:
    """The dashboard page (public: it contains no data and no key)."""
    return _static_response(request, STATIC_DIR / "index.html")


@router.get("/ui/", include_in_schema=False)
async def dashboard_slash() -> Response:
    """Redirect `/ui/` to `/ui` so relative links resolve one way only."""
    return RedirectResponse("/ui", status_code=308)


@router.api_route("/ui/static/{file_path:path}", methods=["GET", "HEAD"], include_in_schema=False)
async def static_file(request: Request, file_path: str) -> Response:
    """A file of the dashboard (script, style, icon); never anything outside its folder."""
    candidate = _static_path(file_path)
    if candidate is None:
        return _not_found("no such dashboard file")
    return _static_response(request, candidate)


def _static_path(file_path: str) -> Path | None:
    # A client picks the name: a NUL byte (ValueError) or a name too long for the file system
    # (OSError) is just another file that does not exist, never a 500.
    try:
        candidate = (STATIC_DIR / file_path).resolve()
        found = candidate.is_relative_to(STATIC_DIR) and candidate.is_file()
    except (OSError, ValueError):
        return None
    return candidate if found else None


class MinuteCounts(BaseModel):
    """Jobs that finished in one wall-clock minute."""

    minute: int = Field(description="Minutes since the Unix epoch (UTC).")
    completed: int
    failed: int = Field(description="Jobs that failed for good (no attempts left).")
    retried: int = Field(description="Failed attempts that will be tried again.")


class ThroughputPublic(BaseModel):
    """Per-minute counters, oldest minute first; the last entry is the current minute."""

    minutes: list[MinuteCounts]


# The queue keeps per-minute counters for two hours (STATS_TTL_SECONDS); asking for more would
# only return zeros that look like real data.
MAX_MINUTES = 120


@router.get(
    "/ui/api/throughput",
    dependencies=[Authenticated],
    responses=responses(),
    summary="Per-minute throughput for the dashboard's charts",
)
async def throughput(
    queue: QueueDep,
    minutes: Annotated[int, Query(ge=1, le=MAX_MINUTES, description="How many minutes.")] = 60,
) -> ThroughputPublic:
    """Completed, failed and retried jobs per minute over the last `minutes` minutes."""
    rows = await queue.per_minute(minutes)
    return ThroughputPublic(
        minutes=[MinuteCounts(minute=minute, **counts) for minute, counts in rows]
    )


class ScheduleRow(Schedule):
    """A schedule as `GET /schedules` lists it, with the state of its newest run."""

    last_run: RunPublic | None = Field(description="Its newest run; null before the first.")


@router.get(
    "/ui/api/schedules",
    dependencies=[Authenticated],
    responses=responses(),
    summary="Schedules with their newest run's state, for the dashboard",
)
async def schedules_with_last_run(queue: QueueDep) -> list[ScheduleRow]:
    """Every schedule, soonest next run first, each with its newest run's state.

    `GET /schedules` has only the run ids; the page would need one `GET /schedules/{id}` per
    row on every refresh, and it refreshes whenever jobs change. This is one call.
    """
    schedules = await queue.list_schedules()
    newest = [schedule.last_run_ids[0] for schedule in schedules if schedule.last_run_ids]
    states = {job.id: job.state for job in await queue.get_many(newest)}
    return [_row(schedule, states) for schedule in schedules]


def _row(schedule: Schedule, states: dict[str, JobState]) -> ScheduleRow:
    ids = schedule.last_run_ids
    last_run = RunPublic(job_id=ids[0], state=states.get(ids[0])) if ids else None
    # dict(schedule), not model_dump(): the fields go in as the models they are, so each
    # spec's timezone is not checked again against every zone on disk.
    return ScheduleRow(**dict(schedule), last_run=last_run)


@router.get(
    "/ui/api/events",
    dependencies=[Authenticated],
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "An SSE stream"},
        **responses(),
    },
    response_class=EventSourceResponse,
    summary="Queue-wide change notifications for the dashboard",
)
async def queue_events(queue: QueueDep, settings: SettingsDep) -> EventSourceResponse:
    """Server-Sent Events: `ready`, then `changes` whenever jobs change state (coalesced)."""
    return EventSourceResponse(
        queue_event_stream(queue, settings.sse_max_seconds),
        # Not int(): a sub-second setting would become 0, which turns pings off altogether.
        ping=settings.sse_ping_seconds,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
