"""Liveness and readiness for the load balancer and ECS; unauthenticated on purpose."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import QueueDep
from service.api.errors import ERROR_RESPONSES
from service.api.schemas import Liveness, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Liveness:
    """The process is alive (it answers without touching Redis)."""
    return Liveness(status="ok")


@router.get("/readyz", responses={503: ERROR_RESPONSES[503]})
async def readyz(queue: QueueDep) -> Readiness:
    """Redis answers a PING; 503 with Retry-After otherwise, so the ALB stops routing here."""
    latency = await queue.ping()
    return Readiness(status="ready", redis_latency_ms=round(latency * 1000, 3))
