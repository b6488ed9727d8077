"""The event stream behind `GET /jobs/{id}/events` (Server-Sent Events).

The Lua scripts publish every state change and progress update of a job on its own pub/sub
channel. The stream subscribes first and reads the job second, so a change that lands between
the two is never lost, and a client that connects late still starts from the current status.
Pub/sub is fire-and-forget (a reconnect can drop messages), so while waiting the stream also
re-reads the job now and then, and it ends at a terminal state either way.

Log lines: the `log` script publishes each line, numbered, on the same channel, so a `log`
event reaches the stream in order with the state changes around it (a line logged just before
the job ends comes before `end`). With `logs=True` the stream first sends the kept lines, and
before `end` (and after any quiet spell) it reads the list again for lines a dropped message
missed: every line from the subscription on is sent exactly once, in order, by number.
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


class _LogLines:
    """The log lines a stream sent, by number, so none is sent twice or skipped."""

    def __init__(self, queue: JobQueue, job_id: str, enabled: bool) -> None:
        self.queue, self.job_id, self.enabled = queue, job_id, enabled
        self.sent = 0  # the number of the last line sent

    def event(self, index: int, line: str) -> ServerSentEvent:
        self.sent = index
        return _event("log", {"id": self.job_id, "index": index, "line": line})

    async def catch_up(self, before: int | None = None) -> list[ServerSentEvent]:
        """Kept lines after the last sent (below `before` when given), read from Redis."""
        if not self.enabled:
            return []
        lines = await self.queue.numbered_logs(self.job_id, self.sent)
        return [self.event(i, line) for i, line in lines if before is None or i < before]

    async def on_message(self, index: int, line: str) -> list[ServerSentEvent]:
        """A published line: with any lines before it a dropped message missed."""
        if index <= self.sent:
            return []  # sent already (read from the list after the subscription began)
        gap = await self.catch_up(before=index) if index > self.sent + 1 else []
        return [*gap, self.event(index, line)]


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
    queue: JobQueue, pubsub: PubSub, job_id: str, deadline: float, poll: float, *, logs: _LogLines
) -> AsyncIterator[ServerSentEvent]:
    while time.monotonic() < deadline:
        payload = parse_event(
            await pubsub.get_message(ignore_subscribe_messages=True, timeout=poll)
        )
        if payload is None:
            job = await queue.get(job_id)  # quiet for a while: check nothing was missed
            for event in await logs.catch_up():
                yield event
            if job.state in TERMINAL:
                yield _end_event(job)
                return
            continue
        if "log" in payload:
            for event in await logs.on_message(int(payload.get("index", 0)), str(payload["log"])):
                yield event
            continue
        state = JobState(payload["state"])
        if state in TERMINAL:
            for event in await logs.catch_up():  # the last lines, before `end`
                yield event
            yield await _final(queue, job_id, state)
            return
        yield _translate(payload)


async def job_event_stream(
    queue: JobQueue, job_id: str, max_seconds: float, poll_seconds: float, logs: bool = False
) -> AsyncIterator[ServerSentEvent]:
    """`status` now, then `status`/`progress`/`log` on every change, then `end` with the final
    job. With `logs`, the kept log lines come first, and every line exactly once (by number).

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
        lines = _LogLines(queue, job_id, logs)
        async for event in _job_events(
            queue, pubsub, job_id, max_seconds, poll_seconds, logs=lines
        ):
            yield event
    except (QueueUnavailableError, *REDIS_DOWN) as exc:
        yield _unavailable_event(exc)
    finally:
        # A connection already gone has nothing left to release.
        with contextlib.suppress(*REDIS_DOWN):
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py


async def _job_events(
    queue: JobQueue,
    pubsub: PubSub,
    job_id: str,
    max_seconds: float,
    poll_seconds: float,
    *,
    logs: _LogLines,
) -> AsyncIterator[ServerSentEvent]:
    try:
        job = await queue.get(job_id)
        for event in await logs.catch_up():  # read after subscribing: nothing falls between
            yield event
        if job.state in TERMINAL:
            yield _end_event(job)
            return
        yield _event("status", _status_payload(job))
        deadline = time.monotonic() + max_seconds
        poll = min(poll_seconds, 5.0)
        async for event in _follow(queue, pubsub, job_id, deadline, poll, logs=logs):
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
