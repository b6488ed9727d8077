"""Liveness and readiness for the load balancer and ECS; unauthenticated on purpose."""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.api.deps import QueueDep, has_valid_key
from service.api.errors import ERROR_RESPONSES, NotReadyError
from service.api.schemas import Liveness, Readiness
from service.queue.errors import QueueUnavailableError

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Liveness:
    """The process is alive (it answers without touching Redis)."""
    return Liveness(status="ok")


@router.get("/readyz", responses={503: ERROR_RESPONSES[503]})
async def readyz(queue: QueueDep, request: Request) -> Readiness:
    """Redis answers a PING; 503 with Retry-After otherwise, so the ALB stops routing here.

    Without an API key a 503 says only "not ready": why Redis is unreachable names its host,
    port and whether auth failed, which is for operators, not for anyone who can reach the ALB.
    """
    try:
        latency = await queue.ping()
    except QueueUnavailableError:
        if not has_valid_key(request):
            raise NotReadyError() from None
        raise
    return Readiness(status="ready", redis_latency_ms=round(latency * 1000, 3))
