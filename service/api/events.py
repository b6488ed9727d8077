"""The event stream behind `GET /jobs/{id}/events` (Server-Sent Events).

The Lua scripts publish every state change and progress update of a job on its own pub/sub
channel. The stream subscribes first and reads the job second, so a change that lands between
the two is never lost, and a client that connects late still starts from the current status.
Pub/sub is fire-and-forget (a reconnect can drop messages), so while waiting the stream also
re-reads the job now and then, and it ends at a terminal state either way.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio.client import PubSub
from sse_starlette import ServerSentEvent

from service.api.schemas import JobPublic
from service.queue.errors import JobNotFoundError, QueueUnavailableError
from service.queue.models import Job
from service.queue.queue import REDIS_DOWN, JobQueue, parse_event
from service.queue.states import TERMINAL, JobState


def _event(name: str, payload: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(payload, default=str), event=name)


def _status_payload(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.state.value,
        "progress": job.progress,
        "message": job.progress_message,
    }


def _end_event(job: Job) -> ServerSentEvent:
    return _event("end", JobPublic.from_job(job).model_dump(mode="json"))


async def _final(queue: JobQueue, job_id: str, state: JobState) -> ServerSentEvent:
    # Retention may remove a job the moment it finishes (remove_on_complete=true): then the
    # published state is all there is to report.
    try:
        return _end_event(await queue.get(job_id))
    except JobNotFoundError:
        return _event("end", {"id": job_id, "status": state.value})


def _translate(payload: dict[str, Any]) -> ServerSentEvent:
    if "progress" in payload:
        return _event(
            "progress",
            {
                "id": payload.get("id"),
                "status": payload["state"],
                "progress": payload["progress"],
                "message": payload.get("message"),
            },
        )
    return _event("status", {"id": payload.get("id"), "status": payload["state"]})


async def _follow(
    queue: JobQueue, pubsub: PubSub, job_id: str, deadline: float, poll: float
) -> AsyncIterator[ServerSentEvent]:
    while time.monotonic() < deadline:
        payload = parse_event(
            await pubsub.get_message(ignore_subscribe_messages=True, timeout=poll)
        )
        if payload is None:
            job = await queue.get(job_id)  # quiet for a while: check nothing was missed
            if job.state in TERMINAL:
                yield _end_event(job)
                return
            continue
        state = JobState(payload["state"])
        if state in TERMINAL:
            yield await _final(queue, job_id, state)
            return
        yield _translate(payload)


async def job_event_stream(
    queue: JobQueue, job_id: str, max_seconds: float, poll_seconds: float
) -> AsyncIterator[ServerSentEvent]:
    """`status` now, then `status`/`progress` on every change, then `end` with the final job.

    Ends after `max_seconds` without a terminal state (clients reconnect), when the job is
    gone, or with an `error` event when Redis goes away: the response has started by then, so
    a 503 is no longer possible, and a stream that just broke would look like a network fault.
    """
    try:
        pubsub = await queue.subscribe(job_id)
    except QueueUnavailableError as exc:
        yield _unavailable_event(exc)
        return
    try:
        async for event in _job_events(queue, pubsub, job_id, max_seconds, poll_seconds):
            yield event
    except (QueueUnavailableError, *REDIS_DOWN) as exc:
        yield _unavailable_event(exc)
    finally:
        # A connection already gone has nothing left to release.
        with contextlib.suppress(*REDIS_DOWN):
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py


async def _job_events(
    queue: JobQueue, pubsub: PubSub, job_id: str, max_seconds: float, poll_seconds: float
) -> AsyncIterator[ServerSentEvent]:
    try:
        job = await queue.get(job_id)
        if job.state in TERMINAL:
            yield _end_event(job)
            return
        yield _event("status", _status_payload(job))
        deadline = time.monotonic() + max_seconds
        async for event in _follow(queue, pubsub, job_id, deadline, min(poll_seconds, 5.0)):
            yield event
    except JobNotFoundError:
        yield _event("end", {"id": job_id, "status": None, "message": "the job no longer exists"})


def _unavailable_event(exc: Exception) -> ServerSentEvent:
    # The same code and message as the 503 body, so clients handle both alike.
    return _event(
        "error",
        {
            "code": "queue_unavailable",
            "message": "the queue's Redis server is unreachable; reconnect later",
            "details": {"reason": str(exc)},
        },
    )
