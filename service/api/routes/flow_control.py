"""Flow control endpoints: pause and resume the queue or a job type, global limits per job
type, promote a delayed job and change a waiting job's priority (docs/queue.md "Flow control")."""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from service.api.deps import Authenticated, QueueDep
from service.api.errors import responses
from service.api.routes.jobs import JobId
from service.api.routing import TemplateRoute
from service.api.schemas import (
    JOB_TYPE_MAX_LENGTH,
    STRICT,
    JobPublic,
    LimitsPublic,
    PriorityName,
)
from service.jobs.registry import REGISTRY
from service.queue.flow_control import FlowControl, FlowState, RateLimit
from service.queue.states import Priority

router = APIRouter(tags=["flow control"], dependencies=[Authenticated], route_class=TemplateRoute)

TypeName = Annotated[
    str, Path(min_length=1, max_length=JOB_TYPE_MAX_LENGTH, description="A registered job type.")
]


class RateLimitIn(BaseModel):
    """At most `limit` starts in any window of `per_seconds`, across all workers."""

    model_config = STRICT
    limit: int = Field(gt=0, le=1_000_000, description="Starts allowed per window.")
    per_seconds: float = Field(gt=0, le=86_400, description="Length of the window in seconds.")


class LimitsIn(BaseModel):
    """Fields left out are unchanged; `null` removes that limit."""

    model_config = STRICT
    rate: RateLimitIn | None = Field(default=None, description="Global start rate, or null.")
    concurrency: int | None = Field(
        default=None, gt=0, le=1_000_000, description="Jobs processing at once, or null."
    )

    async def apply(self, lane: str, limits: LaneLimits) -> None:
        """Set what the body names on `lane` (a type's or a group's limits); nothing else."""
        if "rate" in self.model_fields_set:
            rate = self.rate
            await limits.set_rate(
                lane,
                None if rate is None else RateLimit(limit=rate.limit, per_seconds=rate.per_seconds),
            )
        if "concurrency" in self.model_fields_set:
            await limits.set_concurrency(lane, self.concurrency)


class LaneLimits(Protocol):
    """What holds a lane's limits: FlowControl (types) and Groups."""

    async def set_rate(self, lane: str, rate: RateLimit | None, /) -> None: ...

    async def set_concurrency(self, lane: str, concurrency: int | None, /) -> None: ...


class QueueFlowPublic(BaseModel):
    paused: bool = Field(description="No job of this queue starts while true.")


class TypeFlowPublic(BaseModel):
    type: str
    paused: bool = Field(description="No job of this type starts while true.")
    limits: LimitsPublic

    @classmethod
    def from_state(cls, job_type: str, state: FlowState) -> TypeFlowPublic:
        return cls(
            type=job_type,
            paused=job_type in state.paused_lanes,
            limits=LimitsPublic.from_limits(state.limits_of(job_type)),
        )


class PriorityIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    priority: PriorityName = Field(description="The job's new priority level.")


@router.post("/queue/pause")
async def pause_queue(queue: QueueDep) -> QueueFlowPublic:
    """Stop starting jobs (running jobs go on; enqueues are accepted)."""
    await FlowControl(queue).pause_queue()
    return QueueFlowPublic(paused=True)


@router.post("/queue/resume")
async def resume_queue(queue: QueueDep) -> QueueFlowPublic:
    """Start jobs again."""
    await FlowControl(queue).resume_queue()
    return QueueFlowPublic(paused=False)


@router.post("/jobs/types/{type}/pause", responses=responses(404))
async def pause_type(type: TypeName, queue: QueueDep) -> TypeFlowPublic:
    """Stop starting jobs of one type."""
    REGISTRY.get(type)
    flow = FlowControl(queue)
    await flow.pause_lane(type)
    return TypeFlowPublic.from_state(type, await flow.state())


@router.post("/jobs/types/{type}/resume", responses=responses(404))
async def resume_type(type: TypeName, queue: QueueDep) -> TypeFlowPublic:
    """Start jobs of one type again."""
    REGISTRY.get(type)
    flow = FlowControl(queue)
    await flow.resume_lane(type)
    return TypeFlowPublic.from_state(type, await flow.state())


@router.put("/jobs/types/{type}/limits", responses=responses(404, 413))
async def set_limits(type: TypeName, body: LimitsIn, queue: QueueDep) -> TypeFlowPublic:
    """Set or remove (null) the global rate and concurrency limits of one type."""
    REGISTRY.get(type)
    flow = FlowControl(queue)
    await body.apply(type, flow)
    return TypeFlowPublic.from_state(type, await flow.state())


@router.post("/jobs/{id}/promote", responses=responses(404, 409))
async def promote_job(id: JobId, queue: QueueDep) -> JobPublic:
    """Run a delayed job now (409 when it is not delayed)."""
    await FlowControl(queue).promote(id)
    return JobPublic.from_job(await queue.get(id))


@router.patch("/jobs/{id}", responses=responses(404, 409, 413))
async def change_job(id: JobId, body: PriorityIn, queue: QueueDep) -> JobPublic:
    """Move a pending or delayed job to another priority, keeping its FIFO place."""
    await FlowControl(queue).set_priority(id, Priority.parse(body.priority))
    return JobPublic.from_job(await queue.get(id))
