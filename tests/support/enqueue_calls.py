"""Counting the `enqueue` script calls a client sends, without MONITOR on the shared server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from service.queue.queue import JobQueue


class EnqueueCalls:
    """Counts the `enqueue` script calls a client sends (and how many jobs each carries), and
    can hold them at a gate: a wrapped client, no MONITOR on the shared server."""

    def __init__(self, redis: Redis, queue: JobQueue) -> None:
        self.sha = queue.scripts.sha("enqueue")
        self.jobs_per_call: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.held = asyncio.Event()
        real: Callable[..., Awaitable[Any]] = redis.evalsha

        async def counted(sha: str, numkeys: int, *keys_and_args: Any) -> Any:
            if sha == self.sha:
                self.jobs_per_call.append(
                    (len(keys_and_args) - numkeys - 2) // queue.ENQUEUE_FIELDS_PER_JOB
                )
                if not self.gate.is_set():
                    self.held.set()
                    await self.gate.wait()
            return await real(sha, numkeys, *keys_and_args)

        redis.evalsha = counted  # type: ignore[method-assign]
