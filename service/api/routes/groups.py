"""Fair-share group endpoints: list groups, and pause, resume and limit one (docs/queue.md
"Groups"). Shaped like the job types' flow-control endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from service.api.deps import Authenticated, QueueDep
from service.api.errors import responses
from service.api.routes.flow_control import LimitsIn
from service.api.routing import TemplateRoute
from service.api.schemas import LimitsPublic
from service.queue.groups import GroupInfo, Groups, checked_group
from service.queue.options import MAX_GROUP_BYTES
from service.queue.queue import MAX_PAGE

router = APIRouter(tags=["groups"], dependencies=[Authenticated], route_class=TemplateRoute)

# Checked by `checked_group` (422 saying what to fix): bytes, not characters, bound a name.
GroupPath = Annotated[
    str,
    Path(description=f"A group name (1-{MAX_GROUP_BYTES} bytes of UTF-8, no control characters)."),
]


class GroupPublic(BaseModel):
    """One fair-share group."""

    group: str
    pending: int = Field(description="Jobs of the group waiting to start.")
    running: int = Field(description="Jobs of the group processing now, across all workers.")
    paused: bool = Field(description="No job of this group starts while true.")
    limits: LimitsPublic

    @classmethod
    def from_info(cls, info: GroupInfo) -> GroupPublic:
        return cls(
            group=info.name,
            pending=info.pending,
            running=info.running,
            paused=info.paused,
            limits=LimitsPublic.from_limits(info.limits),
        )


class GroupPage(BaseModel):
    """Groups with pending or running jobs or settings, largest backlog first."""

    items: list[GroupPublic]
    total: int = Field(description="Groups known in all.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


@router.get("/groups")
async def list_groups(
    queue: QueueDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Groups per page.")] = 100,
    cursor: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,9}$", description="`next_cursor` of the last page.")
    ] = None,
) -> GroupPage:
    """Groups with their pending and running jobs, pause and limits, largest backlog first.
    Pages are read at an offset: while backlogs change, a group may move between pages."""
    offset = int(cursor or 0)
    infos, total = await Groups(queue).list_groups(limit, offset)
    more = offset + len(infos) < total
    return GroupPage(
        items=[GroupPublic.from_info(info) for info in infos],
        total=total,
        next_cursor=str(offset + len(infos)) if more and infos else None,
    )


@router.get("/groups/{group}")
async def get_group(group: GroupPath, queue: QueueDep) -> GroupPublic:
    """One group (zero counts and no limits for a group never seen)."""
    return GroupPublic.from_info(await Groups(queue).get(group))


@router.post("/groups/{group}/pause")
async def pause_group(group: GroupPath, queue: QueueDep) -> GroupPublic:
    """Stop starting jobs of one group (its running jobs go on; enqueues are accepted)."""
    groups = Groups(queue)
    await groups.pause(checked_group(group))
    return GroupPublic.from_info(await groups.get(group))


@router.post("/groups/{group}/resume")
async def resume_group(group: GroupPath, queue: QueueDep) -> GroupPublic:
    """Start jobs of one group again."""
    groups = Groups(queue)
    await groups.resume(checked_group(group))
    return GroupPublic.from_info(await groups.get(group))


@router.put("/groups/{group}/limits", responses=responses(413))
async def set_group_limits(group: GroupPath, body: LimitsIn, queue: QueueDep) -> GroupPublic:
    """Set or remove (null) the rate and concurrency limits of one group, across all workers."""
    groups = Groups(queue)
    await body.apply(checked_group(group), groups)
    return GroupPublic.from_info(await groups.get(group))
