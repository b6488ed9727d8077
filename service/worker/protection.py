"""ECS task scale-in protection, kept in step with whether this worker holds jobs: set as soon
as an idle worker takes work, refreshed every heartbeat, cleared when it stops."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from service.worker.background import quietly


class ScaleInProtection(Protocol):
    """ECS task scale-in protection (service.ecs_protection.TaskProtection)."""

    async def update(self, busy: bool) -> None:
        """Protect the task while busy, release it when idle."""

    async def release(self) -> None:
        """The task is stopping: clear its protection and never set it again."""

    async def aclose(self) -> None:
        """Release resources."""


class ProtectionSwitch:
    """Tells the scale-in protection (if any) whether the worker is busy."""

    def __init__(self, protection: ScaleInProtection | None, busy: Callable[[], bool]) -> None:
        self.protection = protection
        self._busy = busy
        self._protected = False  # busy as last told to the protection
        self._protecting: asyncio.Task[None] | None = None
        # Set once the worker got its shutdown signal: draining jobs must not re-protect a task
        # ECS is already stopping (a protection left set makes the next deployment wait for it).
        self._released = False

    def took_work(self) -> None:
        """An idle worker just took work: protect the task now rather than at the next
        heartbeat, so a scale-in in between cannot pick this task. Off the delivery path."""
        if self._protected or self._released or self.protection is None:
            return
        if self._protecting and not self._protecting.done():
            return
        self._protecting = asyncio.create_task(quietly(self.update(), "set task protection"))

    async def update(self) -> None:
        """Protect the task while the worker holds jobs, release it otherwise."""
        if self.protection is not None and not self._released:
            busy = self._busy()
            await self.protection.update(busy=busy)
            self._protected = busy

    async def release(self) -> None:
        """The worker got its shutdown signal and takes no more work: clear the task's
        protection now, while running jobs still drain within the grace. Idempotent."""
        if self._released or self.protection is None:
            return
        self._released = True
        if self._protecting is not None:
            await self._protecting
        await quietly(self.protection.release(), "release task protection")

    async def close(self) -> None:
        """The worker stops: release the task and the protection's own resources."""
        if self._protecting is not None:
            await self._protecting
        if self.protection is not None:
            if not self._released:
                await quietly(self.protection.update(busy=False), "clear task protection")
            await self.protection.aclose()
