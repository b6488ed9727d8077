"""Throughput and wait-time history beyond the queue's two hours of per-minute counters.

The finish script counts completed/failed/retried per epoch minute (kept STATS_TTL_SECONDS) and
keeps the newest SAMPLES_KEPT (wait, run) pairs without timestamps. `fold` turns each closed
minute into a small history hash (its counters plus wait-time percentiles) and adds it to its
hour's hash, so the dashboard can chart 24 h and 7 d. Memory stays bounded by the TTLs: at most
MINUTES_KEPT minute hashes and HOURS_KEPT hour hashes of seven fields each, a few tens of KB.

A minute's percentiles come from the newest samples at fold time, as many as the minute
completed: folded soon after the minute closes (the metrics loop does it every period, the
history endpoint before it answers), those are that minute's jobs plus a few of the next.
An hour's percentile is the completed-weighted mean of its minutes' percentiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from redis.typing import EncodableT, FieldT

from service.queue.queue import STATS_TTL_SECONDS, JobQueue

MINUTES_KEPT = 120
HOURS_KEPT = 8 * 24
MINUTE_TTL_SECONDS = MINUTES_KEPT * 60
HOUR_TTL_SECONDS = HOURS_KEPT * 3600
# Only minutes whose counters still exist can be folded.
FOLD_WINDOW_MINUTES = STATS_TTL_SECONDS // 60
COUNTERS = ("completed", "failed", "retried")
PERCENTILES = (50, 95, 99)

HistoryRange = Literal["1h", "24h", "7d"]
# Each range: (bucket seconds, bucket count).
RANGES: dict[str, tuple[int, int]] = {"1h": (60, 60), "24h": (3600, 24), "7d": (3600, 168)}


@dataclass(frozen=True)
class HistoryPoint:
    """One bucket of history; percentiles are None when no job completed in it."""

    start: int  # epoch seconds
    completed: int
    failed: int
    retried: int
    wait_ms: dict[int, int | None]


def percentile(sorted_values: list[int], pct: int) -> int:
    """Nearest-rank percentile of an ascending, non-empty list."""
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


async def fold(queue: JobQueue) -> int:
    """Fold every closed, not yet folded minute into the history; returns how many were.

    Several API processes and the metrics loop may fold at once: HSETNX on the minute's hash
    claims it, so each minute is added to its hour once."""
    redis, keys = queue.redis, queue.keys
    this_minute = int(queue.clock() // 60)
    folded_raw = await queue._guard(redis.get(keys.history_folded))
    first = this_minute - FOLD_WINDOW_MINUTES + 1
    if folded_raw is not None:
        first = max(first, int(folded_raw) + 1)
    minutes = range(first, this_minute)
    if not minutes:
        return 0
    pipe = redis.pipeline(transaction=False)
    for minute in minutes:
        pipe.hgetall(keys.stats_minute(minute))
    rows = await queue._guard(pipe.execute())
    samples = [wait for wait, _run in await queue.recent_samples()]
    done = 0
    for minute, row in zip(minutes, rows, strict=True):
        counts = {name: int(row.get(name, 0)) for name in COUNTERS}
        waits = sorted(samples[: counts["completed"]])
        claimed = await queue._guard(
            redis.hsetnx(keys.history_minute(minute), "completed", counts["completed"])
        )
        if not claimed:
            continue
        wait = {p: percentile(waits, p) for p in PERCENTILES} if waits else {}
        fields: dict[FieldT, EncodableT] = {
            "failed": counts["failed"],
            "retried": counts["retried"],
        }
        fields |= {f"wait_p{p}": value for p, value in wait.items()}
        hour_key = keys.history_hour(minute // 60)
        pipe = redis.pipeline(transaction=True)
        pipe.hset(keys.history_minute(minute), mapping=fields)
        pipe.expire(keys.history_minute(minute), MINUTE_TTL_SECONDS)
        for name in COUNTERS:
            pipe.hincrby(hour_key, name, counts[name])
        if waits:
            pipe.hincrby(hour_key, "weighted", len(waits))
        for p, value in wait.items():
            pipe.hincrby(hour_key, f"wait_p{p}_sum", value * len(waits))
        pipe.expire(hour_key, HOUR_TTL_SECONDS)
        await queue._guard(pipe.execute())
        done += 1
    await queue._guard(redis.set(keys.history_folded, this_minute - 1))
    return done


async def series(queue: JobQueue, history_range: str) -> tuple[int, list[HistoryPoint]]:
    """(bucket seconds, points oldest first) of the closed buckets of `history_range`; the
    current hour of an hourly range counts its minutes folded so far."""
    await fold(queue)
    bucket, count = RANGES[history_range]
    now_bucket = int(queue.clock() // bucket)
    # Minute buckets end with the last closed minute; hour buckets with the current hour.
    last = now_bucket - 1 if bucket == 60 else now_bucket
    starts = range(last - count + 1, last + 1)
    pipe = queue.redis.pipeline(transaction=False)
    for index in starts:
        key = queue.keys.history_minute(index) if bucket == 60 else queue.keys.history_hour(index)
        pipe.hgetall(key)
    rows = await queue._guard(pipe.execute())
    return bucket, [
        _point(index * bucket, row, hourly=bucket != 60)
        for index, row in zip(starts, rows, strict=True)
    ]


def _point(start: int, row: dict[str, str], *, hourly: bool) -> HistoryPoint:
    counts = {name: int(row.get(name, 0)) for name in COUNTERS}
    wait: dict[int, int | None] = dict.fromkeys(PERCENTILES)
    if hourly:
        weighted = int(row.get("weighted", 0))
        if weighted:
            wait = {p: round(int(row[f"wait_p{p}_sum"]) / weighted) for p in PERCENTILES}
    elif f"wait_p{PERCENTILES[0]}" in row:
        wait = {p: int(row[f"wait_p{p}"]) for p in PERCENTILES}
    return HistoryPoint(start=start, wait_ms=wait, **counts)
