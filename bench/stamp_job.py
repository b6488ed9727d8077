"""`bench-stamp`: a job that reports its own start latency, for the fixed-rate latency run.

Loaded by the benchmark's workers through JOB_MODULES. It measures what taskiq-redis's side
measures (bench/stream_app.py `stamp`): the worker's clock when the job's code starts minus
the producer's clock just before it enqueued, both `time.time()` on this one machine, so the
figure is not quantised to the millisecond timestamps the job hash stores.
"""

from __future__ import annotations

import time

from pydantic import BaseModel

from service.jobs.registry import job_type
from service.queue.job_context import JobContext


class StampPayload(BaseModel):
    """When the producer sent the job (seconds since the epoch)."""

    sent: float


@job_type("bench-stamp", StampPayload)
async def stamp(payload: StampPayload, job: JobContext) -> dict[str, float]:
    """Return how long after being sent the job started, in milliseconds."""
    return {"start_latency_ms": (time.time() - payload.sent) * 1000}
