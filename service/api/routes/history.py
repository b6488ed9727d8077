"""GET /jobs/stats/history: throughput, failures and wait-time percentiles over 1 h, 24 h, 7 d."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from service.api.deps import Authenticated, QueueDep
from service.api.errors import responses
from service.api.routing import TemplateRoute
from service.metrics.history import HistoryRange, series

router = APIRouter(tags=["monitoring"], dependencies=[Authenticated], route_class=TemplateRoute)


class HistoryPointPublic(BaseModel):
    """One bucket (a minute or an hour) of the queue's history."""

    start: int = Field(description="Start of the bucket, seconds since the Unix epoch (UTC).")
    completed: int
    failed: int = Field(description="Jobs that failed for good (no attempts left).")
    retried: int = Field(description="Failed attempts that will be tried again.")
    wait_p50_ms: int | None = Field(description="Median wait (enqueue to start); null: no jobs.")
    wait_p95_ms: int | None
    wait_p99_ms: int | None


class HistoryPublic(BaseModel):
    """Buckets oldest first: 60 closed minutes for 1h, 24 or 168 hours for 24h and 7d (the
    last hour still filling)."""

    range: HistoryRange
    bucket_seconds: int
    points: list[HistoryPointPublic]


@router.get("/jobs/stats/history", responses=responses())
async def stats_history(
    queue: QueueDep,
    range: Annotated[HistoryRange, Query(description="How far back.")] = "1h",
) -> HistoryPublic:
    """Throughput and wait-time history, kept in Redis per minute (2 h) and per hour (8 d)."""
    bucket, points = await series(queue, range)
    return HistoryPublic(
        range=range,
        bucket_seconds=bucket,
        points=[
            HistoryPointPublic(
                start=point.start,
                completed=point.completed,
                failed=point.failed,
                retried=point.retried,
                wait_p50_ms=point.wait_ms[50],
                wait_p95_ms=point.wait_ms[95],
                wait_p99_ms=point.wait_ms[99],
            )
            for point in points
        ],
    )
