"""A job type for tests that leaves evidence of every run in the job's own log."""

from __future__ import annotations

import asyncio
import os
import time

from pydantic import BaseModel

from service.jobs.registry import JobTypeDefaults, job_type
from service.queue.job_context import JobContext


class ProbePayload(BaseModel):
    """How long to run."""

    seconds: float = 0


@job_type("probe", ProbePayload, defaults=JobTypeDefaults(attempts=3))
async def probe(payload: ProbePayload, job: JobContext) -> dict[str, int]:
    """Log `ran <pid>` on each run; log `stopped` if cancelled mid-run."""
    await job.log(f"ran {os.getpid()}")
    try:
        await asyncio.sleep(payload.seconds)
    except asyncio.CancelledError:
        await job.log("stopped")
        raise
    return {"pid": os.getpid()}


@job_type("hog", ProbePayload, defaults=JobTypeDefaults(attempts=3))
async def hog(payload: ProbePayload, job: JobContext) -> dict[str, int]:
    """Log `ran <pid>`, then hold the event loop in a CPU loop for `seconds` (no await in it,
    as a CPU-bound job written without care would)."""
    await job.log(f"ran {os.getpid()}")
    until = time.monotonic() + payload.seconds
    spins = 0
    while time.monotonic() < until:
        spins += 1
    return {"pid": os.getpid(), "spins": spins}


class ChattyPayload(BaseModel):
    """How many lines to log and the pause after each but the last."""

    lines: int = 5
    pause_seconds: float = 0.3


@job_type("chatty", ChattyPayload)
async def chatty(payload: ChattyPayload, job: JobContext) -> dict[str, int]:
    """Log `line 1` .. `line N` with a pause between them; the last right before it returns."""
    for number in range(1, payload.lines + 1):
        await job.log(f"line {number}")
        if number < payload.lines:
            await asyncio.sleep(payload.pause_seconds)
    return {"lines": payload.lines}


@job_type("probe-parent", ProbePayload, defaults=JobTypeDefaults(attempts=3))
async def probe_parent(payload: ProbePayload, job: JobContext) -> dict[str, int]:
    """A flow parent: log `ran <pid> <children results seen>` on each run."""
    results = await job.children_results()
    await job.log(f"ran {os.getpid()} {len(results)}")
    await asyncio.sleep(payload.seconds)
    return {"pid": os.getpid(), "children": len(results)}
