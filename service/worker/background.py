"""The two shapes of a worker's background work: a step repeated every interval, and a step
whose transient failure is logged rather than ending the loop that runs it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from service.queue.wire import reraise_swallowed_cancel

log = logging.getLogger(__name__)


async def quietly(awaitable: Awaitable[Any], what: str) -> Any:
    """Await it; a transient Redis error in a background step is logged and gives None."""
    try:
        return await awaitable
    except Exception:
        log.exception("could not %s", what.strip("_"))
        return None


async def every(seconds: float, action: Callable[[], Awaitable[None]]) -> None:
    """Run `action` every `seconds` (woken by nothing else) until cancelled."""
    while True:
        await asyncio.sleep(seconds)
        await quietly(action(), action.__name__)
        reraise_swallowed_cancel()
