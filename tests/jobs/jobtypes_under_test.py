"""Job types that exist only for tests: loaded into real workers through JOB_MODULES.

Sleeping on purpose is what makes timeouts and concurrency observable.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from service.jobs import JobContext, JobTypeDefaults, job_type
from service.queue.models import Backoff

SLEEPER_TIMEOUT_SECONDS = 1.0
LIMITED_CONCURRENCY = 3


class Sleep(BaseModel):
    """How long the job sleeps."""

    seconds: float


@job_type(
    "test-sleeper",
    Sleep,
    defaults=JobTypeDefaults(
        attempts=2,
        backoff=Backoff(type="fixed", delay_seconds=0.1, jitter=0),
        timeout_seconds=SLEEPER_TIMEOUT_SECONDS,
    ),
)
async def sleeper(payload: Sleep, job: JobContext) -> dict[str, float]:
    """Sleeps longer than its type's timeout allows."""
    await asyncio.sleep(payload.seconds)
    return {"slept": payload.seconds}


@job_type(
    "test-limited", Sleep, defaults=JobTypeDefaults(attempts=1, concurrency=LIMITED_CONCURRENCY)
)
async def limited(payload: Sleep, job: JobContext) -> dict[str, float]:
    """Sleeps; at most LIMITED_CONCURRENCY of these run at once, fleet-wide."""
    await asyncio.sleep(payload.seconds)
    return {"slept": payload.seconds}
