"""`jobqueue metrics`: collect the queue's numbers every period and publish them.

Every metric is published every period, zeros included: CloudWatch alarms and target tracking
go to INSUFFICIENT_DATA on gaps. A transient Redis or AWS failure is logged and the loop goes
on; the next period publishes fresh values. Ticks are aligned to period boundaries (plus a small
offset), so each publish's completed/failed counts cover exactly the minutes that closed since
the previous one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import IO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from redis.exceptions import RedisError

from service import healthcheck
from service.jobs import load_job_types
from service.metrics import canary, history
from service.metrics import contract as c
from service.metrics.collector import collect
from service.metrics.datums import Datum, canary_datum, snapshot_datums
from service.metrics.publishers import (
    CloudWatchPublisher,
    PrintPublisher,
    Publisher,
)
from service.queue.connection import connect, make_queue, queue_config
from service.queue.errors import QueueUnavailableError
from service.queue.queue import Clock, JobQueue, QueueConfig
from service.settings import Settings

log = logging.getLogger(__name__)

# Ticks land this long after a period boundary, so the minute that just closed is complete even
# from workers whose clocks run a few seconds behind the metrics task's.
TICK_OFFSET_SECONDS = 5.0
# Client timeouts well inside a period: a hung AWS call must not swallow the next tick.
AWS_CONNECT_TIMEOUT_SECONDS = 5
AWS_READ_TIMEOUT_SECONDS = 15

REDIS_ERRORS = (QueueUnavailableError, RedisError)
AWS_ERRORS = (ClientError, BotoCoreError)

# The container health record of a publish holds this many periods: one failed period (a Redis
# blip, a throttled PutMetricData) must not get the task replaced, but a loop that has not
# published for this long is stuck and a fresh task is the cure (service/healthcheck.py).
HEALTH_FRESH_PERIODS = 5

# Each publish logs one line with the figures an on-call engineer reads first; the rest are in
# CloudWatch and on /metrics. The canary's is there only when it was measured.
LOG_LINE_FIGURES = (
    ("pending", c.QUEUE_DEPTH),
    ("running", c.ACTIVE_JOBS),
    ("backlog", c.QUEUE_BACKLOG),
    ("workers", c.LIVE_WORKERS),
    ("completed", c.JOBS_COMPLETED),
    ("failed", c.JOBS_FAILED),
    ("oldest_pending_s", c.OLDEST_PENDING_AGE),
    ("wait_p99_ms", c.JOB_WAIT_P99),
    ("canary_s", c.CANARY_LATENCY),
)

AsyncSleep = Callable[[float], Awaitable[None]]


class MetricsLoop:
    """Collect, add the canary, publish; once per period."""

    def __init__(
        self,
        queue: JobQueue,
        publisher: Publisher,
        period_seconds: float,
        canary_config: QueueConfig | None = None,
        *,
        clock: Clock = time.time,
        job_types: Sequence[str] = (),
    ) -> None:
        """`canary_config` None disables the canary; `clock` is injectable for tests;
        `job_types` get a per-type depth series (0) before their first job."""
        self.queue = queue
        self.publisher = publisher
        self.period = period_seconds
        self.canary_config = canary_config
        self.clock = clock
        self.job_types = tuple(job_types)
        # Periods whose canary this process enqueued: see _canary_trimmed.
        self._canaries: set[int] = set()

    async def tick(self) -> bool:
        """One period's work; False when nothing (or not everything) could be published."""
        now = self.clock()
        try:
            snapshot = await collect(self.queue, self.period)
            # The dashboard's 24 h / 7 d history outlives the 2 h per-minute counters only
            # if closed minutes are folded before they expire, dashboard open or not.
            await history.fold(self.queue)
        except REDIS_ERRORS:
            log.exception("metrics: cannot read the queue, nothing published this period")
            return False
        datums = snapshot_datums(snapshot, self.job_types) + await self._canary(now)
        try:
            await asyncio.to_thread(self.publisher.publish, datums, snapshot.taken_at)
        except AWS_ERRORS:
            log.exception("metrics: publishing %d data points failed", len(datums))
            return False
        self._record_health(f"published {len(datums)} data points")
        log.info("metrics: published %d data points: %s", len(datums), log_line_figures(datums))
        return True

    def _record_health(self, detail: str) -> None:
        """Tell the container health check this process publishes (only a success counts)."""
        healthcheck.record(
            "metrics",
            fresh_for=HEALTH_FRESH_PERIODS * self.period + TICK_OFFSET_SECONDS,
            detail=detail,
        )

    async def _canary(self, now: float) -> list[Datum]:
        if self.canary_config is None:
            return []
        index = canary.period_index(now, self.period)
        try:
            latency = await canary.measure(self.queue, index)
            await canary.enqueue(self.queue, self.canary_config, index)
        except REDIS_ERRORS:
            log.exception("metrics: canary skipped this period")
            return []
        self._canaries.add(index)
        if latency is None and self._canary_trimmed(index):
            latency = 0.0
        return [] if latency is None else [canary_datum(latency)]

    def _canary_trimmed(self, index: int) -> bool:
        """Whether a canary this process enqueued in the lookback window has vanished.

        Only finished jobs are removed, by the completed-set retention that every finishing job
        applies: past ~10,000 completions a period an earlier canary can be gone by the next tick.
        It did complete, so jobs flow: report 0 rather than leave a gap the alarm reads as
        breaching. (Its exact latency is lost.)
        """
        window = range(index - canary.LOOKBACK_PERIODS, index)
        self._canaries = {i for i in self._canaries if i >= window.start}
        return any(i in window for i in self._canaries)

    def seconds_to_next_tick(self) -> float:
        """Time until the next period boundary plus the offset."""
        now = self.clock()
        current = canary.period_index(now - TICK_OFFSET_SECONDS, self.period)
        return max(0.0, (current + 1) * self.period + TICK_OFFSET_SECONDS - now)

    async def run(self, stop: asyncio.Event, sleep: AsyncSleep) -> None:
        """Tick at every period boundary until `stop` is set; `sleep` must return early on stop."""
        # Healthy from the start: the first publish is at most a period away, well inside the
        # record's lifetime, so the health check needs no long start period.
        self._record_health("started, first publish at the next period boundary")
        while not stop.is_set():
            await sleep(self.seconds_to_next_tick())
            if stop.is_set():
                break
            await self.tick()


def log_line_figures(datums: Sequence[Datum]) -> str:
    """`pending=3 running=2 …`: LOG_LINE_FIGURES among `datums`, queue-wide values only."""
    values = {d.spec: d.value for d in datums if d.extra_value is None}
    return " ".join(
        f"{label}={round(values[spec], 2):g}" for label, spec in LOG_LINE_FIGURES if spec in values
    )


class Unpublished:
    """CloudWatch publishing off (local runs; Prometheus scrapes the API's /metrics): nothing
    is sent, and the loop's line per publish shows it ticks."""

    def publish(self, datums: Sequence[Datum], at: datetime) -> None:
        """Send nothing."""


def build_publisher(settings: Settings, dry_run: bool, stream: IO[str] | None = None) -> Publisher:
    """Print for --dry-run, CloudWatch when enabled, else nowhere (the loop logs each tick)."""
    if dry_run:
        return PrintPublisher(settings.queue_name, settings.environment, stream or sys.stdout)
    if settings.cloudwatch_enabled:
        config = Config(
            retries={"mode": "standard", "total_max_attempts": 1},  # retries are ours
            connect_timeout=AWS_CONNECT_TIMEOUT_SECONDS,
            read_timeout=AWS_READ_TIMEOUT_SECONDS,
        )
        client = boto3.client("cloudwatch", region_name=settings.aws_region, config=config)
        return CloudWatchPublisher(client, settings.queue_name, settings.environment)
    return Unpublished()


def registered_job_types(settings: Settings) -> list[str]:
    """The built-in types and those of JOB_MODULES, as the API and workers register them.

    A JOB_MODULES entry this image cannot import costs only its zero series: the metrics that
    autoscaling and alarms read must not stop over it.
    """
    try:
        return load_job_types(settings.extra_job_modules).names()
    except ImportError:
        log.exception("metrics: cannot import JOB_MODULES; per-type series of built-ins only")
        return load_job_types().names()


def stop_aware_sleep(stop: asyncio.Event) -> AsyncSleep:
    """A sleep that returns as soon as `stop` is set."""

    async def sleep(seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)

    return sleep


async def metrics_main(
    settings: Settings,
    once: bool = False,
    dry_run: bool = False,
    stop: asyncio.Event | None = None,
) -> int:
    """`run_metrics` for callers already inside an event loop (e.g. `jobqueue run`).

    Without `stop`, SIGTERM and SIGINT end the loop; with it, the caller decides.
    """
    redis = connect(settings)
    try:
        loop = MetricsLoop(
            make_queue(settings, redis),
            build_publisher(settings, dry_run),
            settings.metrics_period_seconds,
            queue_config(settings) if settings.canary_enabled else None,
            job_types=registered_job_types(settings),
        )
        if once:
            return 0 if await loop.tick() else 1
        if stop is None:
            stop = asyncio.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        log.info("metrics: publishing every %g s", settings.metrics_period_seconds)
        await loop.run(stop, stop_aware_sleep(stop))
        return 0
    finally:
        await redis.aclose()  # type: ignore[attr-defined, unused-ignore]  # stubs predate aclose


def run_metrics(settings: Settings, once: bool = False, dry_run: bool = False) -> int:
    """The `jobqueue metrics` command: 0 on success; with `once`, 1 if the publish failed."""
    if not settings.redis_configured:
        log.error("metrics: set REDIS_URL or REDIS_HOST (or run it under `jobqueue run`)")
        return 2
    return asyncio.run(metrics_main(settings, once, dry_run))
