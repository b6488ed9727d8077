"""The one error body every response uses: `{"error": {"code", "message", "details"}}`.

Queue-layer errors carry a category; this module maps each category to an HTTP status in one
place, so a route never picks a status code for a failure itself.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Route

from service.jobs.registry import MAX_DATA_DEPTH
from service.queue.errors import ErrorCategory, JobQueueError
from service.queue.queue import REDIS_DOWN

log = logging.getLogger(__name__)

STATUS_BY_CATEGORY: dict[ErrorCategory, int] = {
    ErrorCategory.NOT_FOUND: 404,
    ErrorCategory.CONFLICT: 409,
    ErrorCategory.INVALID: 422,
    ErrorCategory.UNAVAILABLE: 503,
    # 503, not 507: a full queue is transient (workers drain it), and client retry policies
    # honour Retry-After on 503 (urllib3's Retry does so for 413, 429 and 503 only). The code
    # `queue_full` tells it apart from an unreachable Redis.
    ErrorCategory.FULL: 503,
}
# Redis failover on ElastiCache takes tens of seconds; asking clients to wait a few seconds
# before retrying spreads their retries instead of hammering a recovering server.
RETRY_AFTER_SECONDS = 5

CODE_BY_STATUS: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "queue_unavailable",
}


class ErrorInfo(BaseModel):
    """What went wrong: a stable machine code, a sentence for humans, and structured details."""

    code: str = Field(examples=["job_not_found"])
    message: str = Field(examples=["no job with id 'abc'"])
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorInfo


class ApiError(StarletteHTTPException):
    """An HTTP error raised by the API layer itself (auth, body size), in the common shape."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.code = code
        self.message = message
        self.details = details or {}


class NotReadyError(ApiError):
    """503 for a caller without a key: the reason stays with operators."""

    def __init__(self) -> None:
        super().__init__(
            503,
            "not_ready",
            "not ready",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSONResponse with the common error body."""
    body = ErrorBody(error=ErrorInfo(code=code, message=message, details=details or {}))
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def unavailable_response(
    message: str, details: dict[str, Any] | None = None, code: str = "queue_unavailable"
) -> JSONResponse:
    """503 with Retry-After: Redis cannot be reached, or is full; nothing was changed."""
    return error_response(
        503,
        code,
        message,
        details,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _queue_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, JobQueueError)
    status = STATUS_BY_CATEGORY[exc.category]
    if status == 503:
        return unavailable_response(exc.message, exc.details, exc.code)
    return error_response(status, exc.code, exc.message, exc.details)


async def _redis_down(_: Request, exc: Exception) -> JSONResponse:
    # The queue layer turns these into QueueUnavailableError; this catches the rest (pub/sub).
    return unavailable_response(
        "the queue's Redis server is unreachable; nothing was changed", {"reason": str(exc)}
    )


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    # ("body", "backoff", "delay_seconds") -> "backoff.delay_seconds"; where the value came from
    # (body/query/path) is kept apart so clients can point at their own field name.
    parts = [str(part) for part in loc[1:]] if len(loc) > 1 else [str(p) for p in loc]
    return ".".join(parts)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": _field_name(err["loc"]), "in": str(err["loc"][0]), "message": err["msg"]}
        for err in exc.errors()
    ]
    summary = "; ".join(f"{e['field'] or e['in']}: {e['message']}" for e in errors[:5])
    return error_response(
        422, "validation_error", f"invalid request: {summary}", {"errors": errors}
    )


def _http_routes(routes: Iterable[BaseRoute]) -> Iterator[Route]:
    for route in routes:
        if isinstance(route, Route):
            yield route
        # FastAPI keeps an included router's routes behind one entry; look inside it.
        nested = getattr(route, "original_router", None)
        if nested is not None:
            yield from _http_routes(nested.routes)


def _method_table(app: FastAPI) -> list[tuple[int, re.Pattern[str], frozenset[str]]]:
    # Built once per app from its real routes (dashboard and docs included, which the OpenAPI
    # schema leaves out): (number of path parameters, path regex, methods it answers).
    table: list[tuple[int, re.Pattern[str], frozenset[str]]] | None = getattr(
        app.state, "method_table", None
    )
    if table is None:
        table = [
            (len(route.param_convertors), route.path_regex, frozenset(route.methods or ()))
            for route in _http_routes(app.routes)
        ]
        app.state.method_table = table
    return table


def allowed_methods(request: Request) -> str:
    """The methods of the resource at this path, for a 405's `Allow` header.

    Starlette names only the first route that matched; `/jobs/{id}` has GET and DELETE on
    separate routes, so that would under-report. The most specific routes decide, as in
    routing: `/jobs/stats` is GET only even though `DELETE /jobs/{id}` also matches it. HEAD is
    listed only where a route really answers it.
    """
    path = request.scope.get("path", "")
    matches = [(n, methods) for n, regex, methods in _method_table(request.app)
               if regex.match(path)]  # fmt: skip
    fewest = min((n for n, _ in matches), default=0)
    return ", ".join(sorted({m for n, methods in matches if n == fewest for m in methods}))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):
        # FastAPI's body parser gave up on nesting deeper than Python's recursion limit.
        return error_response(
            422,
            "validation_error",
            f"invalid request: the JSON body nests too deeply to read; a job's `data` may "
            f"nest at most {MAX_DATA_DEPTH} levels",
            {"errors": [{"field": "", "in": "body", "message": "nested too deeply"}]},
        )
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": allowed_methods(request)}
    if isinstance(exc, ApiError):
        return error_response(exc.status_code, exc.code, exc.message, exc.details, headers)
    code = CODE_BY_STATUS.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), None, headers)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    # A bug, not a client error: log it whole, tell the client nothing internal.
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "the server failed to handle this request")


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure through the common error body."""
    app.add_exception_handler(JobQueueError, _queue_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for exc_type in REDIS_DOWN:
        app.add_exception_handler(exc_type, _redis_down)
    app.add_exception_handler(Exception, _unexpected)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or wrong API key"},
    422: {"model": ErrorBody, "description": "A field is invalid; `details.errors` names it"},
    503: {
        "model": ErrorBody,
        "description": "Redis is unreachable (`queue_unavailable`), near its memory limit "
        "(`queue_full`), or every pooled connection of this API process stayed busy "
        "(`connection_pool_exhausted`); nothing was changed; retry after `Retry-After`",
    },
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI response entries for the common errors plus `statuses` (404, 409, 413)."""
    extra = {
        404: {"model": ErrorBody, "description": "No such job or job type"},
        409: {"model": ErrorBody, "description": "The job is in a state that forbids this"},
        413: {"model": ErrorBody, "description": "The request body is over the size limit"},
        400: {"model": ErrorBody, "description": "The body could not be read (e.g. not UTF-8)"},
    }
    if 413 in statuses:
        statuses = (*statuses, 400)  # every route with a body can meet an unreadable one
    return {**ERROR_RESPONSES, **{s: extra[s] for s in statuses}}
