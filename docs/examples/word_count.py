"""`word-count`: an example job type in one module (docs/job-types.md walks through it)."""

from __future__ import annotations

import re
from collections import Counter

from pydantic import BaseModel, ConfigDict, Field

from service.jobs import JobContext, JobTypeDefaults, PermanentJobError, job_type
from service.queue.options import Backoff


class WordCountPayload(BaseModel):
    """Validated at enqueue: a bad payload is a 422 naming the field."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=1_000_000)
    top: int = Field(default=3, ge=1, le=100)


class WordCountResult(BaseModel):
    """Stored on the job as its result."""

    words: int
    top: list[tuple[str, int]]


@job_type(
    "word-count",
    WordCountPayload,
    defaults=JobTypeDefaults(
        attempts=2,
        backoff=Backoff(type="fixed", delay_seconds=5),
        timeout_seconds=30,
        concurrency=20,
    ),
)
async def word_count(payload: WordCountPayload, job: JobContext) -> WordCountResult:
    """Count the words of a text and report the most common ones."""
    words = re.findall(r"[\w']+", payload.text.lower())
    if not words:
        raise PermanentJobError("the text has no words")  # bad input: never retried
    await job.progress(50, f"{len(words)} words")
    top = Counter(words).most_common(payload.top)
    await job.progress(100, "counted")
    return WordCountResult(words=len(words), top=top)
