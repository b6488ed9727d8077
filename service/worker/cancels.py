"""Cancel signals: an active job's cancel is published on the queue's cancel channel, and every
worker stops the job if it holds it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from service.queue.consumer import Consumer

log = logging.getLogger(__name__)

# After the cancel listener loses its connection it tries again this long later.
RECONNECT_SECONDS = 1.0


async def listen_for_cancels(consumer: Consumer, drop: Callable[[str], None]) -> None:
    """Call `drop(job_id)` for every cancel signal, reconnecting until cancelled."""
    while True:
        try:
            async with consumer.redis.pubsub() as pubsub:
                await pubsub.subscribe(consumer.keys.cancel_channel)
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        drop(message["data"])
        except asyncio.CancelledError:
            raise
        except Exception:
            # Lease renewal also notices cancelled jobs, so a gap here only slows a cancel.
            log.exception("cancel listener lost its connection; reconnecting")
            await asyncio.sleep(RECONNECT_SECONDS)
