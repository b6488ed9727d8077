"""Job types standing in for a team's taskiq-redis tasks (the workers load them by JOB_MODULES)."""

from __future__ import annotations

import os

from pydantic import BaseModel

from service.jobs import JobContext, JobTypeDefaults, job_type
from service.queue.options import Backoff


class Echo(BaseModel):
    n: int
    fail_first: int = 0


def runs_key(queue_name: str) -> str:
    """Where each job's runs are counted (a key of the test queue, deleted with it)."""
    return f"jqtest:{{{queue_name}}}:migrated-runs"


# A retry waits 0.2 s: with no wait at all, the worker can take the retry before it has let go
# of the failed attempt, and then loses track of it (reported with issue 20, not fixed here).
@job_type(
    "migrated-echo",
    Echo,
    defaults=JobTypeDefaults(
        attempts=3, backoff=Backoff(type="fixed", delay_seconds=0.2, jitter=0)
    ),
)
async def migrated_echo(payload: Echo, job: JobContext) -> dict[str, int]:
    """Count the run, fail the first `fail_first` attempts, return n doubled."""
    await job.queue.redis.hincrby(runs_key(os.environ["QUEUE_NAME"]), job.job_id, 1)
    if job.attempt <= payload.fail_first:
        raise RuntimeError(f"attempt {job.attempt} fails on purpose")
    return {"n": payload.n, "double": 2 * payload.n}
