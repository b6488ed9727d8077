"""Job types: a payload model and an async function, registered with `@job_type`.

A job type is what clients enqueue by name. Its payload model validates `data` at enqueue (a bad
payload is rejected before anything is stored) and again in the worker; its defaults (attempts,
backoff, timeout, concurrency limit) apply unless a job overrides them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from service.queue.errors import (
    InvalidJobError,
    InvalidRequestError,
    PermanentJobError,
    UnknownJobTypeError,
)
from service.queue.job_context import JobContext
from service.queue.models import JobSpec
from service.queue.options import Backoff, JobOptions, Retention
from service.queue.queue import QueueConfig
from service.queue.schedules import ScheduleSpec
from service.queue.states import Priority

P = TypeVar("P", bound=BaseModel)
Handler = Callable[[Any, JobContext], Awaitable[Any]]

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}[a-z0-9]$")
# How deep a job's `data` may nest (objects and arrays; `{"a": [1]}` is 2 levels). Far above any
# real payload, far below the 255 levels where pydantic's serializer gives up (the 500 of issue
# 12) and Python's JSON parser's recursion limit.
MAX_DATA_DEPTH = 64
# Fixed API paths that sit where a job type name would (`/jobs/{type}/jobs`, `/{type}/enqueue`):
# a type may not be named like them, so routing can never be ambiguous.
RESERVED_NAMES = frozenset(
    {
        "jobs", "enqueue", "stats", "health", "workers", "failed", "pending", "active",
        "completed", "delayed", "cancelled", "processing", "metrics", "ui", "healthz", "readyz",
        "docs", "redoc", "openapi", "bulk", "events", "static", "api", "types", "queue",
        "schedules", "groups", "flows", "waiting-children",
    }
)  # fmt: skip


@dataclass(frozen=True)
class JobTypeDefaults:
    """Per-type defaults; every field can be overridden per job (service.queue.options
    .JobOptions) except `concurrency`. Checked against the options' limits when a job's
    JobSpec is built."""

    attempts: int = 3
    backoff: Backoff = field(default_factory=Backoff)
    timeout_seconds: float | None = None
    # Max jobs of this type processing at once across ALL worker processes; None = no limit.
    concurrency: int | None = None
    priority: Priority = Priority.NORMAL
    keep_completed: Retention | None = None
    keep_failed: Retention | None = None


@dataclass(frozen=True)
class JobType:
    """A registered job type."""

    name: str
    payload_model: type[BaseModel]
    handler: Handler
    defaults: JobTypeDefaults
    description: str

    def validate_payload(self, data: dict[str, Any]) -> BaseModel:
        """The payload as the model; InvalidJobError naming each bad field otherwise.

        Strict, and from JSON: `"5"` is not a number and `1` is not `true`, exactly as the
        published schema says, while JSON's own forms (arrays for tuples, strings for enums and
        datetimes) are read as JSON clients send them.
        """
        check_depth(data)
        try:
            return self._parse(data)
        except ValidationError as exc:
            errors = [
                {"field": ".".join(str(p) for p in ("data", *err["loc"])), "message": err["msg"]}
                for err in exc.errors(include_url=False)
            ]
            raise InvalidJobError(
                f"invalid data for job type {self.name!r}: "
                + "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                {"errors": errors},
            ) from exc

    def _parse(self, data: dict[str, Any]) -> BaseModel:
        try:
            text = json.dumps(data, allow_nan=False)
        except (TypeError, ValueError) as exc:  # a Python caller's datetime, set, NaN...
            raise InvalidJobError(
                f"data for job type {self.name!r} must be JSON: {exc}",
                {"errors": [{"field": "data", "message": f"not JSON: {exc}"}]},
            ) from exc
        return self.payload_model.model_validate_json(text, strict=True)

    def build_spec(
        self,
        data: dict[str, Any],
        config: QueueConfig,
        options: JobOptions | None = None,
        **fields: Any,
    ) -> JobSpec:
        """A validated JobSpec: the job's options over this type's defaults over the queue's.

        The options come as `options`, or as its fields by keyword (`attempts=3`), checked
        against the same limits either way.
        """
        opts = options if options is not None else JobOptions.model_validate(fields)
        payload = self.validate_payload(data)
        d = self.defaults
        return JobSpec(
            type=self.name,
            data=payload.model_dump(mode="json", exclude_unset=False),
            priority=opts.priority or d.priority,
            delay_seconds=opts.delay_seconds,
            attempts=opts.attempts or d.attempts,
            backoff=opts.backoff or d.backoff,
            timeout_seconds=opts.timeout_seconds or d.timeout_seconds,
            idempotency_key=opts.idempotency_key,
            dedupe=opts.dedupe,
            group=opts.group,
            keep_completed=Retention.parse(
                opts.remove_on_complete, d.keep_completed or config.keep_completed
            ),
            keep_failed=Retention.parse(opts.remove_on_fail, d.keep_failed or config.keep_failed),
        )

    async def run(self, data: dict[str, Any], job: JobContext) -> Any:
        """Validate the payload and run the handler; a bad payload never retries."""
        try:
            payload = self._parse(data)
        except (ValidationError, InvalidJobError) as exc:
            raise PermanentJobError(f"invalid payload: {exc}") from exc
        result = await self.handler(payload, job)
        if isinstance(result, BaseModel):
            return result.model_dump(mode="json")
        return result


def check_depth(data: dict[str, Any]) -> None:
    """InvalidJobError when `data` nests deeper than MAX_DATA_DEPTH; iterative, so no depth
    can exhaust the stack."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DATA_DEPTH:
            message = f"nested more than {MAX_DATA_DEPTH} levels deep (the limit)"
            raise InvalidJobError(
                f"invalid data: {message}", {"errors": [{"field": "data", "message": message}]}
            )
        children = value.values() if isinstance(value, dict) else value
        if isinstance(value, dict | list):
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


class JobRegistry:
    """Job types by name."""

    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}

    def add(self, job_type: JobType) -> None:
        """Register a type; names are unique, lower-case-kebab, and not an API path word."""
        if not _NAME.match(job_type.name) or job_type.name in RESERVED_NAMES:
            raise ValueError(
                f"job type name {job_type.name!r} must be lower-case letters, digits and dashes "
                f"and not one of: {', '.join(sorted(RESERVED_NAMES))}"
            )
        existing = self._types.get(job_type.name)
        if existing is not None and existing.handler is not job_type.handler:
            raise ValueError(f"job type {job_type.name!r} is already registered")
        self._types[job_type.name] = job_type

    def get(self, name: str) -> JobType:
        """The type named `name`; UnknownJobTypeError listing the known types otherwise."""
        try:
            return self._types[name]
        except KeyError:
            raise UnknownJobTypeError(
                f"unknown job type {name!r}; known types: {', '.join(self.names())}",
                {"type": name, "known_types": self.names()},
            ) from None

    def schedule_job(self, spec: ScheduleSpec, config: QueueConfig) -> JobSpec:
        """The job a schedule enqueues on each tick, checked as an enqueue's. An unknown type is
        a bad field of the schedule (422 naming `type`), not a missing resource as in a path."""
        try:
            job_type = self.get(spec.type)
        except UnknownJobTypeError as exc:
            field = {"field": "type", "in": "body", "message": exc.message}
            raise InvalidRequestError(exc.message, {"errors": [field]}) from None
        return job_type.build_spec(spec.data, config, spec.options)

    def names(self) -> list[str]:
        """Registered type names, sorted."""
        return sorted(self._types)

    def all(self) -> list[JobType]:
        """Registered types, sorted by name."""
        return [self._types[name] for name in self.names()]

    def concurrency_limits(self) -> dict[str, int]:
        """Types with a cross-worker concurrency limit."""
        return {t.name: t.defaults.concurrency for t in self.all() if t.defaults.concurrency}


REGISTRY = JobRegistry()


def job_type(
    name: str,
    payload: type[P],
    *,
    description: str = "",
    defaults: JobTypeDefaults | None = None,
    registry: JobRegistry = REGISTRY,
) -> Callable[
    [Callable[[P, JobContext], Awaitable[Any]]], Callable[[P, JobContext], Awaitable[Any]]
]:
    """Register an async function `(payload, job) -> result` as job type `name`."""

    def register(
        handler: Callable[[P, JobContext], Awaitable[Any]],
    ) -> Callable[[P, JobContext], Awaitable[Any]]:
        registry.add(
            JobType(
                name=name,
                payload_model=payload,
                handler=handler,
                defaults=defaults or JobTypeDefaults(),
                description=description or (handler.__doc__ or "").strip().split("\n")[0],
            )
        )
        return handler

    return register
