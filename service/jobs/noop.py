"""`noop`: does nothing, on purpose. For smoke tests, benchmarks and health canaries."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, ConfigDict, Field

from service.jobs.registry import JobTypeDefaults, job_type
from service.queue.job_context import JobContext
from service.queue.options import Backoff


class NoopPayload(BaseModel):
    """Knobs that make a noop job behave like a real one."""

    model_config = ConfigDict(extra="forbid")

    sleep_seconds: float = Field(default=0, ge=0, le=3600)
    fail_first_attempts: int = Field(default=0, ge=0, le=100)
    progress_steps: int = Field(default=0, ge=0, le=1000)


class NoopResult(BaseModel):
    """What a noop job returns."""

    attempt: int
    slept_seconds: float


@job_type(
    "noop",
    NoopPayload,
    defaults=JobTypeDefaults(attempts=3, backoff=Backoff(type="fixed", delay_seconds=1, jitter=0)),
)
async def noop(payload: NoopPayload, job: JobContext) -> NoopResult:
    """Sleep, fail the first N attempts, and report progress in N steps."""
    if job.attempt <= payload.fail_first_attempts:
        raise RuntimeError(
            f"noop fails its first {payload.fail_first_attempts} attempt(s); this is {job.attempt}"
        )
    steps = payload.progress_steps
    if steps:
        for step in range(1, steps + 1):
            await asyncio.sleep(payload.sleep_seconds / steps)
            await job.progress(100 * step / steps, f"step {step} of {steps}")
    elif payload.sleep_seconds:
        await asyncio.sleep(payload.sleep_seconds)
    return NoopResult(attempt=job.attempt, slept_seconds=payload.sleep_seconds)
