"""Run a job type's handler the way a worker does, on a real queue, without a worker process.

The job is enqueued and dequeued for real, so its progress and the queue statistics it reads
are the real ones; only the taskiq process around the handler is left out.
"""

from __future__ import annotations

import asyncio
import gc
import io
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from PIL import Image

from service.jobs import load_job_types
from service.jobs.registry import REGISTRY
from service.queue.consumer import Consumer
from service.queue.job_context import JobContext
from service.queue.models import Job
from service.queue.queue import JobQueue, QueueConfig

load_job_types()


async def start_job(
    queue: JobQueue, type_name: str, data: dict[str, Any], **options: Any
) -> tuple[JobContext, dict[str, Any]]:
    """Enqueue a job of `type_name` and take it as a worker would; returns its context and data."""
    spec = REGISTRY.get(type_name).build_spec(data, QueueConfig(), **options)
    created = await queue.enqueue(spec)
    consumer = Consumer(queue, "test-worker", lease_seconds=60)
    deliveries, _ = await consumer.dequeue(1)
    assert [d.job_id for d in deliveries] == [created.job.id], "another job was due first"
    context = JobContext(
        job_id=created.job.id,
        job_type=type_name,
        attempt=deliveries[0].attempt,
        max_attempts=spec.attempts,
        consumer=consumer,
    )
    return context, spec.data


async def run_job(
    queue: JobQueue, type_name: str, data: dict[str, Any], **options: Any
) -> tuple[Any, Job]:
    """Run one job of `type_name` to its result; returns the result and the job as stored."""
    context, stored_data = await start_job(queue, type_name, data, **options)
    result = await REGISTRY.get(type_name).run(stored_data, context)
    return result, await queue.get(context.job_id)


def quadrant_image(mode: str, size: tuple[int, int]) -> Image.Image:
    """An image whose quadrants are red, green, blue and white (top-left, top-right, ...).

    Known pixel values let a test check that an operation moved the right pixels, not just
    that the output has the right size.
    """
    width, height = size
    image = Image.new("RGBA", size, (0, 0, 0, 255))
    colours = [(255, 0, 0, 255), (0, 255, 0, 255), (0, 0, 255, 255), (255, 255, 255, 128)]
    boxes = [
        (0, 0, width // 2, height // 2),
        (width // 2, 0, width, height // 2),
        (0, height // 2, width // 2, height),
        (width // 2, height // 2, width, height),
    ]
    for colour, box in zip(colours, boxes, strict=True):
        image.paste(colour, box)
    return image.convert(mode)


def encoded(image: Image.Image, fmt: str) -> bytes:
    """The image as a file in `fmt`."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


T = TypeVar("T")


async def loop_pauses_while(work: Awaitable[T]) -> tuple[T, list[float], float]:
    """Await `work` while a ticker measures the event loop's pauses (10 ms ticks); returns
    the result, every pause between ticks, and the seconds the work took."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    # The worker freezes its start-up objects out of the collector's reach (taskiq_broker's
    # gc.freeze()); so does the probe, so that a full collection over everything the test session
    # has built up (half a second, seen once in CI) is not charged to the job measured here.
    gc.freeze()
    ticking = asyncio.create_task(ticker())
    started = time.perf_counter()
    try:
        result = await work
    finally:
        done.set()
        await ticking
        gc.unfreeze()
    return result, gaps, time.perf_counter() - started


class MailServerHandler:
    """An aiosmtpd handler that keeps every message it accepts and refuses some recipients the
    way real servers do: reject@ permanently (550), later@ always and greylist@ on first
    sight only (451, as greylisting servers answer)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.envelopes: list[Any] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        """Accept or refuse one recipient."""
        if address.startswith("reject@"):
            return "550 5.1.1 no such user"
        first_sight = address not in self.seen
        self.seen.add(address)
        if address.startswith("later@") or (address.startswith("greylist@") and first_sight):
            return "451 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Keep the message."""
        self.envelopes.append(envelope)
        return "250 Message accepted"
