"""The queue-wide change stream behind `GET /ui/api/events` (Server-Sent Events).

The Lua scripts publish every job's state change on the queue's events channel. A dashboard only
needs to know *that* something changed, to re-read the counts, so changes are coalesced: at most
one event per `COALESCE_SECONDS`, however busy the queue. A queue doing thousands of jobs a
second then costs each open dashboard a few events a second, not thousands.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio.client import PubSub
from sse_starlette import ServerSentEvent

from service.queue.errors import QueueUnavailableError
from service.queue.queue import REDIS_DOWN, JobQueue, parse_event

# Long enough to fold a burst into one event, short enough to feel live to a person.
COALESCE_SECONDS = 0.5
# How long one read waits before checking the deadline again.
READ_TIMEOUT_SECONDS = 1.0


def _state_of(message: dict[str, Any] | None) -> str | None:
    event = parse_event(message)
    return None if event is None else str(event["state"])


async def _gather(pubsub: PubSub, first: str) -> Counter[str]:
    """The first change plus every other one that arrives within the coalescing window."""
    counts: Counter[str] = Counter([first])
    window_end = time.monotonic() + COALESCE_SECONDS
    while (left := window_end - time.monotonic()) > 0:
        state = _state_of(await pubsub.get_message(ignore_subscribe_messages=True, timeout=left))
        if state is not None:
            counts[state] += 1
    return counts


async def queue_event_stream(queue: JobQueue, max_seconds: float) -> AsyncIterator[ServerSentEvent]:
    """`ready` once subscribed, then `changes` {"changes": n, "by_status": {...}} per window.

    Ends after `max_seconds` (clients reconnect) or quietly when Redis goes away (clients fall
    back to polling and reconnect later).
    """
    try:
        pubsub = await queue.subscribe()
    except QueueUnavailableError:
        return
    try:
        yield ServerSentEvent(event="ready", data="{}")
        deadline = time.monotonic() + max_seconds
        while time.monotonic() < deadline:
            message = await pubsub.get_message(
                ignore_subscribe_messages=True, timeout=READ_TIMEOUT_SECONDS
            )
            state = _state_of(message)
            if state is None:
                continue
            counts = await _gather(pubsub, state)
            body = {"changes": sum(counts.values()), "by_status": dict(counts)}
            yield ServerSentEvent(event="changes", data=json.dumps(body))
    except REDIS_DOWN:
        return
    finally:
        # A connection already gone has nothing left to release.
        with contextlib.suppress(*REDIS_DOWN):
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py
