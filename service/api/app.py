"""The FastAPI application: `create_app(settings)`, and `app` for `uvicorn service.api.app:app`.

The app refuses to be created without an API key: auth is never silently off. The Redis client
belongs to the lifespan, so it is opened once per process and closed on shutdown.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from service.api.docs_pages import install_docs_pages
from service.api.errors import install_error_handlers
from service.api.limits import BodyLimitMiddleware
from service.api.request_checks import RequestChecksMiddleware, install_access_log_scrubbing
from service.api.routes import (
    artifacts,
    flow_control,
    flows,
    groups,
    health,
    jobs,
    monitoring,
    schedules,
    search,
)
from service.api.routing import let_fixed_paths_win
from service.jobs import load_job_types
from service.queue.connection import connect, make_queue
from service.queue.schedules import ScheduleTicker
from service.queue.wire import cancel_and_wait
from service.settings import Settings, get_settings

log = logging.getLogger(__name__)

DESCRIPTION = """\
Enqueue jobs, follow them, and watch the queue.

Every route needs an API key, sent as `X-API-Key: <key>` or `Authorization: Bearer <key>`,
except these public ones: `/healthz` and `/readyz` (for load balancers; without a key `/readyz`
says only "not ready"), this documentation (`/docs`, `/redoc`, `/openapi.json`: it holds no
data, and client generators read it) and the dashboard's static page (`/ui`, which calls this
API with the key the operator types in). A key in the URL's query string is refused with 400:
URLs get logged.

Request bodies are JSON in UTF-8 (anything else is a 400) of at most `MAX_BODY_BYTES`
(`MAX_FLOW_BODY_BYTES`, 16 MiB, for `POST /flows`); a job's
`data` may nest at most 64 levels deep. Errors always have the body
`{"error": {"code": ..., "message": ..., "details": {...}}}`; 503 responses carry `Retry-After`
(`queue_unavailable`: Redis is unreachable; `queue_full`: Redis is near its memory limit and
new jobs are refused until workers drain the queue). Lists are paginated: pass `next_cursor`
back as `cursor` until it is null.
"""


class MissingApiKeysError(RuntimeError):
    """Raised at start-up when no API key is configured."""


def load_api_keys(settings: Settings) -> list[bytes]:
    """The configured keys as bytes; MissingApiKeysError when there are none."""
    try:
        keys = settings.api_key_values()
    except OSError as exc:
        raise MissingApiKeysError(f"cannot read API_KEYS_FILE: {exc}") from exc
    if not keys:
        raise MissingApiKeysError(
            "no API key configured: set API_KEYS (comma-separated) or API_KEYS_FILE; "
            "`jobqueue run` generates one for local use"
        )
    return [key.encode("utf-8", "surrogateescape") for key in keys]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the Redis client and the queue for the life of the process."""
    settings: Settings = app.state.settings
    redis = connect(settings)
    app.state.queue = make_queue(settings, redis)
    # API processes fire due schedule ticks too, so schedules run while any process is up.
    ticker = asyncio.create_task(ScheduleTicker(app.state.queue).run())
    try:
        yield
    finally:
        await cancel_and_wait([ticker])
        await redis.aclose()


def _dashboard_routers() -> list[APIRouter]:
    # The dashboard ships in the same package; imported by name so the API still starts (and
    # says so) if it is ever left out of a slim build.
    try:
        module = importlib.import_module("service.api.ui.routes")
    except ImportError:
        log.warning("web dashboard not installed; /ui is unavailable")
        return []
    router: APIRouter = module.router
    return [router]


def create_app(settings: Settings) -> FastAPI:
    """The API for `settings`; raises MissingApiKeysError when no key is configured."""
    load_job_types(settings.extra_job_modules)
    app = FastAPI(
        title="jobqueue",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by install_docs_pages, from local assets instead of a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.api_keys = load_api_keys(settings)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        path_limits={"/flows": settings.max_flow_body_bytes},
    )
    app.add_middleware(RequestChecksMiddleware)  # outermost: a key in the URL goes no further
    install_access_log_scrubbing()
    install_error_handlers(app)
    install_docs_pages(app)
    # Fixed paths before `/jobs/{id}` and `/{type}/enqueue`, so they win for their own methods;
    # `let_fixed_paths_win` makes them win for every other method too (405, not "no such job").
    routers = [health.router, monitoring.router, flow_control.router, search.router]
    routers += [schedules.router, groups.router]
    routers += [artifacts.router, flows.router]
    routers += [jobs.router]
    routers += [jobs.type_router]
    routers += _dashboard_routers()
    for router in routers:
        app.include_router(router)
    let_fixed_paths_win(routers)
    return app


def __getattr__(name: str) -> Any:
    # `uvicorn service.api.app:app` reads this attribute; building the app lazily means merely
    # importing this module (tests, tools) needs no API key.
    if name == "app":
        return create_app(get_settings())
    raise AttributeError(name)
