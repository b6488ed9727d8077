"""The queue layer's Python API: enqueue, inspect, list, count, cancel and retry jobs.

The HTTP API, the CLI, the metrics collector and the broker call this; none of them touches
Redis keys directly. Worker-side operations (dequeue, leases, finishing) live in consumer.py,
and the worker that uses them in service/worker/.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline, PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError
from taskiq.message import TaskiqMessage

from service.queue import flows as _flows
from service.queue import schedules as _schedules
from service.queue.enqueue_batch import EnqueueBatcher
from service.queue.errors import (
    ConnectionPoolExhaustedError,
    InvalidRequestError,
    InvalidTransitionError,
    JobNotFoundError,
    QueueFullError,
    QueueUnavailableError,
)
from service.queue.keys import QueueKeys
from service.queue.models import (
    Backoff,
    ChildState,
    EnqueueResult,
    FlowChildren,
    FlowEnqueued,
    FlowNode,
    Job,
    JobSpec,
    MemoryUsage,
    Page,
    QueueCounts,
    Retention,
    TimelineEntry,
    WorkerInfo,
    from_ms,
)
from service.queue.schedules import Schedule, ScheduleSpec
from service.queue.scripts import ScriptArg, Scripts
from service.queue.states import JobState, Priority, pending_score_range
from service.queue.wire import PoolExhaustedError

# Finished-set trimming deletes at most this many jobs per script call, so no call blocks Redis
# for long; every later finish continues where it stopped.
TRIM_BATCH = 100
# Per-minute counters are kept this long: enough for the dashboard's one-hour charts.
STATS_TTL_SECONDS = 2 * 3600
# Newest samples of (wait, run) kept for percentiles.
SAMPLES_KEPT = 1000
# Lists return at most this many jobs per page.
MAX_PAGE = 500
# A cursor's score part: 2^53 - 1, the largest score a double holds exactly, has 16 digits.
MAX_CURSOR_DIGITS = 16

# What "the server cannot be reached" looks like from redis-py, which wraps socket errors in
# these. Not a bare OSError: one can come from anywhere (a file name too long, a full disk) and
# must not be reported, retried or handed back as "Redis is unreachable".
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)

Clock = Callable[[], float]

# What the enqueue script answers per job: a new job, one that existed (its id or idempotency
# key), or one its dedupe key led to.
EXISTING, CREATED, DEDUPLICATED = 0, 1, 2


@dataclass(frozen=True)
class QueueConfig:
    """The settings the queue layer needs (a slice of service.settings.Settings)."""

    keep_completed: Retention = field(
        default_factory=lambda: Retention(count=10_000, age_seconds=24 * 3600)
    )
    keep_failed: Retention = field(
        default_factory=lambda: Retention(count=50_000, age_seconds=7 * 24 * 3600)
    )
    max_log_lines: int = 200
    # Enqueues stop above this share of Redis's maxmemory (see Settings); 0 = no check.
    enqueue_max_memory_share: float = 0.9


def now_ms(clock: Clock) -> int:
    """The clock as integer milliseconds, the unit of every Redis score."""
    return int(clock() * 1000)


def build_message(job_id: str, spec: JobSpec) -> str:
    """The taskiq message a worker receives for this job (task name = job type)."""
    labels: dict[str, Any] = {
        "priority": str(int(spec.priority)),
        "max_attempts": str(spec.attempts),
        "backoff": spec.backoff.model_dump_json(),
    }
    if spec.timeout_seconds is not None:
        labels["timeout"] = str(spec.timeout_seconds)  # taskiq's receiver enforces this label
    message = TaskiqMessage(
        task_id=job_id, task_name=spec.type, labels=labels, args=[], kwargs={"data": spec.data}
    )
    return message.model_dump_json()


class JobQueue:
    """One named queue on one Redis/Valkey server."""

    def __init__(
        self,
        redis: Redis,
        keys: QueueKeys,
        config: QueueConfig | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.config = config or QueueConfig()
        self.clock = clock
        self.scripts = Scripts(redis, keys)
        self._enqueuer = EnqueueBatcher(self._run_enqueue, self.now_ms)

    # --- enqueue -------------------------------------------------------------------------------

    # Entries per job in the `enqueue` script's ARGV (its header lists them).
    ENQUEUE_FIELDS_PER_JOB = 11

    def _enqueue_call(
        self, jobs: Sequence[tuple[str, JobSpec, str]], now: int
    ) -> tuple[dict[str, ScriptArg], list[ScriptArg]]:
        """The `enqueue` ARGV for (job id, spec, taskiq message) triples: all or none."""
        args: dict[str, ScriptArg] = {
            "now_ms": now,
            "max_memory_share": self.config.enqueue_max_memory_share,
        }
        per_job: list[ScriptArg] = []
        for job_id, spec, message in jobs:
            due = now + int(spec.delay_seconds * 1000)
            per_job += [
                job_id, spec.type, int(spec.priority), message, due, spec.attempts,
                spec.keep_completed.encode(), spec.keep_failed.encode(), spec.idempotency_key or "",
                spec.dedupe.encode() if spec.dedupe else "", spec.group or "",
            ]  # fmt: skip
        return args, per_job

    async def _run_enqueue(
        self, jobs: Sequence[tuple[str, JobSpec, str]], now: int
    ) -> list[tuple[str, int, str]]:
        """(job id, outcome, state) per job, outcome one of CREATED, EXISTING, DEDUPLICATED;
        QueueFullError when memory is above the limit."""
        reply = await self._guard(self.scripts.run("enqueue", *self._enqueue_call(jobs, now)))
        if reply[0] == "full":
            raise _memory_refusal(int(reply[1]), int(reply[2]), self.config)
        return [(reply[i], int(reply[i + 1]), reply[i + 2]) for i in range(1, len(reply), 3)]

    async def enqueue(self, spec: JobSpec, job_id: str | None = None) -> EnqueueResult:
        """Add one job. With an idempotency key already used, returns that job (created=False).

        Concurrent calls in one event loop share one script call (enqueue_batch.py); each gets
        its own result or error. QueueFullError when Redis memory is above the limit.
        """
        new_id = job_id or uuid.uuid4().hex
        reply = await self._enqueuer.submit((new_id, spec, build_message(new_id, spec)))
        replies = [(reply.job_id, reply.outcome, reply.state)]
        results = await self._describe([new_id], [spec], replies, reply.now_ms, job_id is None)
        return results[0]

    async def enqueue_many(
        self, specs: Sequence[JobSpec], job_ids: Sequence[str] | None = None
    ) -> list[EnqueueResult]:
        """Add many jobs in one script call: all of them or, on any failure, none.

        QueueFullError when Redis memory is above ENQUEUE_MAX_MEMORY_SHARE of maxmemory.
        """
        ids = list(job_ids) if job_ids else [uuid.uuid4().hex for _ in specs]
        now = now_ms(self.clock)
        jobs = [
            (job_id, spec, build_message(job_id, spec))
            for job_id, spec in zip(ids, specs, strict=True)
        ]
        replies = await self._run_enqueue(jobs, now)
        return await self._describe(ids, specs, replies, now, not job_ids)

    async def _describe(
        self,
        ids: Sequence[str],
        specs: Sequence[JobSpec],
        replies: Sequence[tuple[str, int, str]],
        now: int,
        ids_generated: bool,
    ) -> list[EnqueueResult]:
        """The results of an enqueue call from its replies."""
        # An id this call generated can exist already only if this very call wrote it: the
        # connection's retry resent a script whose reply was lost. That job is new all the same.
        created = [made == CREATED or (ids_generated and found == job_id)
                   for (found, made, _), job_id in zip(replies, ids, strict=True)]  # fmt: skip
        # New jobs are described from what was sent (no read-back round trip); only jobs an
        # idempotency key resolved to an earlier enqueue are read from Redis.
        earlier = {found for (found, _, _), new in zip(replies, created, strict=True) if not new}
        existing = {job.id: job for job in await self.get_many(list(earlier))} if earlier else {}
        created_at = from_ms(now)
        assert created_at is not None
        results = []
        for job_id, spec, (found, made, state), new in zip(
            ids, specs, replies, created, strict=True
        ):
            if new:
                job = _new_job(job_id, spec, JobState(state), now, created_at)
                results.append(EnqueueResult(job=job, created=True))
            elif found in existing:
                results.append(
                    EnqueueResult(
                        job=existing[found], created=False, deduplicated=made == DEDUPLICATED
                    )
                )
        return results

    async def enqueue_message(self, job_id: str, spec: JobSpec, message: str) -> bool:
        """Add a job whose taskiq message was already built (the broker's `kick`), sharing a
        script call with concurrent ones (see `enqueue`); QueueFullError when Redis memory is
        above the limit."""
        reply = await self._enqueuer.submit((job_id, spec, message))
        return reply.outcome == CREATED

    async def enqueue_flow(self, root: FlowNode) -> FlowEnqueued:
        """Add a flow (docs/queue.md "Flows") in one script call: every job or none. Children
        run first; a parent waits in `waiting-children` until all of its children have ended.

        InvalidRequestError naming the node for a flow deeper than 10 levels, with more than
        10,000 jobs below its root, or with an idempotency or dedupe key; QueueFullError when
        Redis memory is above ENQUEUE_MAX_MEMORY_SHARE of maxmemory.
        """
        placed = _flows.walk(root, iter(lambda: uuid.uuid4().hex, None))
        now = now_ms(self.clock)
        messages = [build_message(item.job_id, item.node.spec) for item in placed]
        args: dict[str, ScriptArg] = {
            "now_ms": now, "max_memory_share": self.config.enqueue_max_memory_share,
        }  # fmt: skip
        more = _flows.script_args(placed, messages, now)
        reply = await self._guard(self.scripts.run("enqueue-flow", args, more))
        if reply[0] == "full":
            raise _memory_refusal(int(reply[1]), int(reply[2]), self.config)
        # "exists": the connection's retry resent this call after its reply was lost; the
        # first send made exactly these jobs.
        return FlowEnqueued(root=_flows.tree_of(placed), ids=[item.job_id for item in placed])

    async def children(self, parent_id: str) -> FlowChildren:
        """A flow parent's children with their states, and their results and failures so
        far (two round trips whatever the number of children)."""
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.lrange(k.children(parent_id), 0, -1)
        pipe.hgetall(k.child_results(parent_id))
        pipe.hgetall(k.child_failures(parent_id))
        ids, results, failures = await self._guard(pipe.execute())
        pipe = self.redis.pipeline(transaction=False)
        for child_id in ids:
            pipe.hget(k.job(child_id), "state")
        states = await self._guard(pipe.execute()) if ids else []
        return FlowChildren(
            children=[
                ChildState(id=child_id, state=JobState(state) if state else None)
                for child_id, state in zip(ids, states, strict=True)
            ],
            results={child_id: json.loads(value) for child_id, value in results.items()},
            failures=failures,
        )

    async def children_results(self, parent_id: str) -> dict[str, Any]:
        """Child id -> result of each completed child of a flow parent (one HGETALL)."""
        raw: dict[str, str] = await self._guard(
            self.redis.hgetall(self.keys.child_results(parent_id))
        )
        return {child_id: json.loads(value) for child_id, value in raw.items()}

    async def memory(self) -> MemoryUsage:
        """Redis's used memory and limits, and where this queue stops taking jobs."""
        info = await self._guard(self.redis.info("memory"))
        return MemoryUsage.of(
            int(info["used_memory"]), int(info.get("maxmemory", 0)),
            self.config.enqueue_max_memory_share,
        )  # fmt: skip

    # --- read ----------------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job:
        """The job with this id; JobNotFoundError if there is none."""
        job = (await self._fetch([job_id]))[0]
        if job is None:
            raise JobNotFoundError(f"no job with id {job_id!r}", {"id": job_id})
        return job

    async def get_many(self, job_ids: Sequence[str]) -> list[Job]:
        """Jobs by id in one round trip; ids that no longer exist are left out."""
        return [job for job in await self._fetch(job_ids) if job is not None]

    async def _fetch(self, job_ids: Sequence[str]) -> list[Job | None]:
        if not job_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.keys.job(job_id))
        rows = await self._guard(pipe.execute())
        return [
            _job_from_hash(job_id, row) if row else None
            for job_id, row in zip(job_ids, rows, strict=True)
        ]

    async def numbered_logs(self, job_id: str, after: int = 0) -> list[tuple[int, str]]:
        """The job's kept log lines numbered after `after`, as (number, line), oldest first.

        Numbers come from the hash's `logs_total` (what the `log` script publishes with each
        line), read in one MULTI with the list so the two agree; a job logged before the
        counter existed numbers its kept lines from 1."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hget(self.keys.job(job_id), "logs_total")
        pipe.lrange(self.keys.logs(job_id), 0, -1)
        total, lines = await self._guard(pipe.execute())
        first = (int(total) if total else len(lines)) - len(lines) + 1
        numbered = enumerate(lines, start=first)
        return [(index, line) for index, line in numbered if index > after]

    async def logs(self, job_id: str, limit: int = 100) -> list[str]:
        """The newest `limit` log lines of a job, oldest first."""
        lines: list[str] = await self._guard(self.redis.lrange(self.keys.logs(job_id), -limit, -1))
        return lines

    async def list_jobs(
        self, state: JobState, limit: int = 50, cursor: str | None = None
    ) -> Page[Job]:
        """Jobs in one state: pending in run order, delayed by due time, processing by start,
        finished ones newest first."""
        limit = max(1, min(limit, MAX_PAGE))
        if state is JobState.PROCESSING:
            return await self._list_active(limit, cursor)
        newest_first = state in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)
        sets = [self.keys.state_set(state)]
        if state is JobState.PENDING:
            sets += await self._lane_sets()
        ids, next_cursor = await self._page_ids(sets, limit, cursor, newest_first)
        return Page(items=await self.get_many(ids), next_cursor=next_cursor)

    async def _lane_sets(self) -> list[str]:
        """The pending sets of paused or limited types (docs/queue.md "Flow control") and the
        one set of every grouped pending job (docs/queue.md "Groups"): their jobs are pending
        too, scored as in `pending`, so merged they keep the order of priority and FIFO
        sequence (the order groups actually run in also depends on their turns)."""
        lanes: set[str] = await self._guard(self.redis.smembers(self.keys.lanes))
        return [self.keys.lane(lane) for lane in sorted(lanes)] + [self.keys.groups_pending]

    async def list_by_type(
        self,
        job_type: str,
        state: JobState | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Job]:
        """Jobs of one type, newest first, optionally only those in `state`.

        With a state filter a page may hold fewer than `limit` items while `next_cursor` is
        set: each call scans a bounded window of the type's index instead of the whole index.
        """
        limit = max(1, min(limit, MAX_PAGE))
        window = limit if state is None else limit * 10
        ids, next_cursor = await self._page_ids(
            [self.keys.type_index(job_type)], window, cursor, newest_first=True
        )
        jobs = await self.get_many(ids)
        if state is not None:
            jobs = [job for job in jobs if job.state is state]
            if len(jobs) > limit:
                jobs = jobs[:limit]
                next_cursor = _encode_cursor(_type_score(jobs[-1]), jobs[-1].id)
        return Page(items=jobs, next_cursor=next_cursor)

    async def _lane_counts(self, lanes: list[str]) -> tuple[int, list[int]]:
        """Pending jobs in these lanes: in all, and per priority (in Priority order)."""
        if not lanes:
            return 0, [0] * len(Priority)
        pipe = self.redis.pipeline(transaction=False)
        for lane in lanes:
            pipe.zcard(self.keys.lane(lane))
            for priority in Priority:
                pipe.zcount(self.keys.lane(lane), *pending_score_range(priority))
        replies = await self._guard(pipe.execute())
        per_lane = len(Priority) + 1
        total = sum(replies[i] for i in range(0, len(replies), per_lane))
        priorities = [
            sum(replies[i + 1 + p] for i in range(0, len(replies), per_lane))
            for p in range(len(Priority))
        ]
        return total, priorities

    async def _page_ids(
        self, keys: list[str], limit: int, cursor: str | None, newest_first: bool
    ) -> tuple[list[str], str | None]:
        """A page of sorted sets merged, after (score, member) `cursor`: stable while jobs come
        and go."""
        after = _decode_cursor(cursor)
        if len(keys) == 1:  # ties (a bulk's one due ms, a finish batch's one ms) cost nothing
            rows = await self.page_of(keys[0], after, limit + 1, newest_first)
        fetch = limit + 1
        while len(keys) > 1:
            fetched = await self._range_merged(keys, after, fetch, newest_first)
            rows = fetched
            if after is not None:
                rows = [row for row in fetched if _is_after(row, after, newest_first)]
            if len(rows) > limit or len(fetched) < fetch:
                break
            fetch *= 2  # jobs tied with the cursor's score were filtered out: look further
        page = rows[:limit]
        next_cursor = _encode_cursor(page[-1][1], page[-1][0]) if len(rows) > limit else None
        return [member for member, _ in page], next_cursor

    async def page_of(
        self,
        key: str,
        after: tuple[float, str] | None,
        count: int,
        newest_first: bool,
        bounds: tuple[str, str] = ("-inf", "+inf"),
    ) -> list[tuple[str, float]]:
        """Up to `count` (member, score) rows of one sorted set after the `after` cursor, with
        min <= score <= max (`bounds`): O(log n + count) however many rows tie with the
        cursor's score (lua/page-1.lua)."""
        args: dict[str, ScriptArg] = {
            "after_score": "" if after is None else f"{after[0]:.0f}",
            "after_member": "" if after is None else after[1],
            "reverse": 1 if newest_first else 0,
            "min_score": bounds[0], "max_score": bounds[1], "count": count,
        }  # fmt: skip
        flat: list[str] = await self._guard(self.scripts.run("page", args, keys={"index": key}))
        return [(flat[i], float(flat[i + 1])) for i in range(0, len(flat), 2)]

    async def _range_merged(
        self, keys: list[str], after: tuple[float, str] | None, count: int, newest_first: bool
    ) -> list[tuple[str, float]]:
        """The first `count` rows of the sets together, in the order of one set."""
        if len(keys) == 1:
            return await self._range(keys[0], after, count, newest_first)
        ranges = await asyncio.gather(*(self._range(k, after, count, newest_first) for k in keys))
        rows = [row for fetched in ranges for row in fetched]
        rows.sort(key=lambda row: (row[1], row[0]), reverse=newest_first)
        return rows[:count]

    async def _range(
        self, key: str, after: tuple[float, str] | None, count: int, newest_first: bool
    ) -> list[tuple[str, float]]:
        if newest_first:
            top = "+inf" if after is None else after[0]
            rows = await self._guard(
                self.redis.zrevrangebyscore(key, top, "-inf", start=0, num=count, withscores=True)
            )
        else:
            bottom = "-inf" if after is None else after[0]
            rows = await self._guard(
                self.redis.zrangebyscore(key, bottom, "+inf", start=0, num=count, withscores=True)
            )
        return [(member, float(score)) for member, score in rows]

    async def _list_active(self, limit: int, cursor: str | None) -> Page[Job]:
        # The active set is scored by lease deadline, not start: it is bounded by total worker
        # concurrency, so reading it whole and sorting by start time is cheap. Reserved jobs
        # (prefetched, no start yet) come after the running ones, by creation.
        ids: list[str] = await self._guard(self.redis.zrange(self.keys.active, 0, 9_999))
        jobs = sorted(await self.get_many(ids), key=_active_order)
        offset = _decode_offset(cursor)
        page = jobs[offset : offset + limit]
        more = offset + limit < len(jobs)
        return Page(items=page, next_cursor=str(offset + limit) if more else None)

    async def counts(self) -> QueueCounts:
        """Jobs per state, pending per priority and per type, and the oldest pending age."""
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        for state in JobState:
            pipe.zcard(k.state_set(state))
        for priority in Priority:
            pipe.zcount(k.pending, *pending_score_range(priority))
        # Grouped pending jobs are all in one set (docs/queue.md "Groups").
        pipe.zcard(k.groups_pending)
        for priority in Priority:
            pipe.zcount(k.groups_pending, *pending_score_range(priority))
        pipe.hgetall(k.type_counts)
        pipe.smembers(k.lanes)
        *replies, lanes = await self._guard(pipe.execute())
        grouped_at = len(JobState) + len(Priority)
        grouped = replies[grouped_at : grouped_at + 1 + len(Priority)]
        del replies[grouped_at : grouped_at + 1 + len(Priority)]
        # One more round trip only while some type is paused or limited.
        lane_pending, lane_priorities = await self._lane_counts(sorted(lanes))
        lane_pending += grouped[0]
        lane_priorities = [n + more for n, more in zip(lane_priorities, grouped[1:], strict=True)]
        oldest_ms = await self._guard(
            self.scripts.run(
                "oldest-pending",
                {},
                ["{} {}".format(*pending_score_range(p)) for p in Priority],
            )
        )
        states = list(JobState)
        by_state = dict(zip(states, replies[: len(states)], strict=True))
        by_state[JobState.PENDING] += lane_pending
        priorities = replies[len(states) : len(states) + len(Priority)]
        priorities = [n + more for n, more in zip(priorities, lane_priorities, strict=True)]
        by_type: dict[str, dict[JobState, int]] = {}
        for type_state, value in replies[-1].items():
            job_type, _, state = type_state.rpartition("|")
            by_type.setdefault(job_type, {s: 0 for s in JobState})[JobState(state)] = int(value)
        age = 0.0 if oldest_ms < 0 else max(0.0, self.clock() - oldest_ms / 1000)
        return QueueCounts(
            by_state=by_state,
            pending_by_priority={p.label: n for p, n in zip(Priority, priorities, strict=True)},
            by_type=by_type,
            oldest_pending_age_seconds=age,
        )

    async def throughput(self, minutes: int = 1) -> dict[str, int]:
        """Jobs completed, failed and retried in the last `minutes` whole minutes plus this one."""
        this_minute = int(self.clock() // 60)
        pipe = self.redis.pipeline(transaction=False)
        for minute in range(this_minute - minutes, this_minute + 1):
            pipe.hgetall(self.keys.stats_minute(minute))
        totals = {"completed": 0, "failed": 0, "retried": 0}
        for row in await self._guard(pipe.execute()):
            for name in totals:
                totals[name] += int(row.get(name, 0))
        return totals

    async def per_minute(self, minutes: int = 60) -> list[tuple[int, dict[str, int]]]:
        """Counters of each of the last `minutes` minutes, oldest first."""
        this_minute = int(self.clock() // 60)
        span = range(this_minute - minutes + 1, this_minute + 1)
        pipe = self.redis.pipeline(transaction=False)
        for minute in span:
            pipe.hgetall(self.keys.stats_minute(minute))
        rows = await self._guard(pipe.execute())
        return [
            (minute, {name: int(row.get(name, 0)) for name in ("completed", "failed", "retried")})
            for minute, row in zip(span, rows, strict=True)
        ]

    async def recent_samples(self) -> list[tuple[int, int]]:
        """(wait ms, run ms) of the most recently completed jobs, newest first."""
        raw: list[str] = await self._guard(self.redis.lrange(self.keys.samples, 0, -1))
        return [(int(w), int(r)) for w, r in (item.split(" ") for item in raw)]

    async def workers(self) -> list[WorkerInfo]:
        """Workers whose heartbeat is live, oldest first."""
        ids: list[str] = await self._guard(self.redis.zrange(self.keys.workers, 0, -1))
        pipe = self.redis.pipeline(transaction=False)
        for worker_id in ids:
            pipe.hgetall(self.keys.worker(worker_id))
        rows = await self._guard(pipe.execute())
        return [_worker_from_hash(row) for row in rows if row]

    async def subscribe(self, job_id: str | None = None) -> PubSub:
        """A pub/sub connection receiving the state (and progress) changes of one job, or of
        every job when `job_id` is None. Messages are JSON {"id", "state", "ts"[, "progress",
        "message"]}; the caller closes it with `aclose()`."""
        pubsub = self.redis.pubsub()
        channel = self.keys.events if job_id is None else self.keys.job_events(job_id)
        try:
            await self._guard(pubsub.subscribe(channel))
        except BaseException:
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py
            raise
        return pubsub

    async def ping(self) -> float:
        """Round-trip time to Redis in seconds; QueueUnavailableError when it is down."""
        started = time.perf_counter()
        await self._guard(self.redis.ping())
        return time.perf_counter() - started

    # --- change --------------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> Job:
        """Cancel a delayed, pending or processing job (its worker stops a processing one)."""
        now = now_ms(self.clock)
        args: dict[str, ScriptArg] = {
            "job_id": job_id, "now_ms": now, "trim_limit": TRIM_BATCH,
            "stats_ttl_s": STATS_TTL_SECONDS,
        }  # fmt: skip
        # A flow parent the cancel fails (on_child_failure "fail") counts in this minute's.
        stats_minute = self.keys.stats_minute(now // 60_000)
        reply = await self._guard(
            self.scripts.run("cancel", args, keys={"stats_minute": stats_minute})
        )
        self._check_transition(job_id, reply, "cancel")
        return await self.get(job_id)

    async def retry(self, job_id: str) -> Job:
        """Run a failed or cancelled job again from its first attempt."""
        args: dict[str, ScriptArg] = {"job_id": job_id, "now_ms": now_ms(self.clock)}
        reply = await self._guard(self.scripts.run("retry", args))
        self._check_transition(job_id, reply, "retry")
        return await self.get(job_id)

    async def delete(self, job_id: str) -> None:
        """Delete a completed, failed or cancelled job and its logs; 409 for a live one."""
        reply = await self._guard(self.scripts.run("delete", {"job_id": job_id}))
        self._check_transition(job_id, reply, "delete")

    @staticmethod
    def _check_transition(job_id: str, reply: list[str], verb: str) -> None:
        if reply[0] == "missing":
            raise JobNotFoundError(f"no job with id {job_id!r}", {"id": job_id})
        if reply[0] != "ok":
            raise InvalidTransitionError(
                f"cannot {verb} job {job_id!r}: it is {reply[0]}",
                {"id": job_id, "status": reply[0]},
            )

    async def set_type_limits(self, limits: dict[str, int]) -> None:
        """Publish the per-type concurrency limits declared in code (defaults: a limit set
        through the API, in the flow hash, takes precedence and survives this rewrite)."""
        previous: dict[str, str] = await self._guard(self.redis.hgetall(self.keys.type_limits))
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.keys.type_limits)
        if limits:
            pipe.hset(self.keys.type_limits, mapping={k: str(v) for k, v in limits.items()})
        await self._guard(pipe.execute())
        # A type whose default came or went may gain or lose its own lane (flow-set-6.lua).
        for job_type in set(previous) | set(limits):
            args: dict[str, ScriptArg] = {"field": "", "value": "", "lane": job_type}
            await self._guard(self.scripts.run("flow-set", args))

    # --- schedules (service/queue/schedules.py) ---------------------------------------------

    def now_ms(self) -> int:
        """This queue's clock in ms, the unit of every score."""
        return now_ms(self.clock)

    async def put_schedule(
        self, schedule_id: str, spec: ScheduleSpec, job: JobSpec
    ) -> tuple[Schedule, bool]:
        """Create or replace a schedule that enqueues `job` (its type's defaults resolved, as
        `JobType.build_spec` gives it) on `spec`'s cadence; (schedule, created). A replaced
        schedule keeps its paused state; its run count restarts."""
        spec.check()
        now = self.now_ms()
        fields = _schedules.schedule_fields(spec, job, _ms_of(spec.start_at) or now)
        key = self.keys.schedule(schedule_id)
        first_tick = _schedules.first_tick_ms(spec, _schedules.anchor_of(fields), now)

        async def write(pipe: Pipeline) -> bool:
            # WATCHed: a pause, delete or claim between this read and the write retries it, so
            # a schedule paused meanwhile is never written back due.
            created_ms, paused = await pipe.hmget(key, "created", "paused")
            pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            pipe.hset(key, mapping={name: value for name, value in fields.items()})
            pipe.hsetnx(key, "created", str(now))
            pipe.hsetnx(key, "paused", "0")
            pipe.zadd(
                self.keys.schedules,
                {schedule_id: _schedules.NEVER if paused == "1" else first_tick},
            )
            return created_ms is None

        created: bool = await self._guard(
            self.redis.transaction(write, key, value_from_callable=True)
        )
        return await self.get_schedule(schedule_id), created

    async def get_schedule(self, schedule_id: str) -> Schedule:
        """One schedule; ScheduleNotFoundError if there is none."""
        found = await self._read_schedules([schedule_id])
        if not found:
            raise _schedules.not_found(schedule_id)
        return found[0]

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule, soonest next run first (paused and ended ones last)."""
        ids: list[str] = await self._guard(self.redis.zrange(self.keys.schedules, 0, -1))
        return await self._read_schedules(ids)

    async def _read_schedules(self, ids: list[str]) -> list[Schedule]:
        """The schedules with these ids, in one pipelined round trip; one deleted meanwhile
        is left out."""
        pipe = self.redis.pipeline(transaction=False)
        for schedule_id in ids:
            pipe.hgetall(self.keys.schedule(schedule_id))
            pipe.zscore(self.keys.schedules, schedule_id)
            pipe.lrange(self.keys.schedule_runs(schedule_id), 0, -1)
        replies = await self._guard(pipe.execute()) if ids else []
        found = []
        for i, schedule_id in enumerate(ids):
            row, score, runs = replies[3 * i : 3 * i + 3]
            if row:
                found.append(_schedules.schedule_from_hash(schedule_id, row, score, runs))
        return found

    async def delete_schedule(self, schedule_id: str) -> None:
        """Remove a schedule (its jobs stay); ScheduleNotFoundError if there is none."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.keys.schedule(schedule_id), self.keys.schedule_runs(schedule_id))
        pipe.zrem(self.keys.schedules, schedule_id)
        deleted, _ = await self._guard(pipe.execute())
        if not deleted:
            raise _schedules.not_found(schedule_id)

    async def pause_schedule(self, schedule_id: str, paused: bool = True) -> Schedule:
        """Stop (or, with paused=False, restart from now) a schedule's cadence."""
        key = self.keys.schedule(schedule_id)

        async def write(pipe: Pipeline) -> None:
            # WATCHed: a delete between the read and the write retries it and finds nothing,
            # instead of leaving a hash holding only `paused`.
            row: dict[str, str] = await pipe.hgetall(key)  # type: ignore[assignment]  # decoded
            if not row:
                raise _schedules.not_found(schedule_id)
            score = _schedules.NEVER
            if not paused:
                spec = ScheduleSpec.model_validate_json(row["spec"])
                score = _schedules.first_tick_ms(spec, _schedules.anchor_of(row), self.now_ms())
            pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            pipe.hset(key, "paused", "1" if paused else "0")
            pipe.zadd(self.keys.schedules, {schedule_id: score})

        await self._guard(self.redis.transaction(write, key))
        return await self.get_schedule(schedule_id)

    async def trigger_schedule(self, schedule_id: str) -> str:
        """Enqueue one run now, outside the cadence; the job's id."""
        schedule = await self.get_schedule(schedule_id)
        job_id = _schedules.trigger_job_id(schedule_id)
        reply = await self._claim(
            schedule_id, expected="", next_ms=-1, runs=schedule.runs, job_id=job_id,
            job=schedule.job,
        )  # fmt: skip
        if reply[0] == "missing":
            raise _schedules.not_found(schedule_id)
        return job_id

    async def due_schedules(self, now: int, limit: int) -> list[tuple[str, int]]:
        """(schedule id, tick ms) of schedules due at `now`, soonest first."""
        rows = await self._guard(self.redis.zrangebyscore(
            self.keys.schedules, "-inf", now, start=0, num=limit, withscores=True
        ))  # fmt: skip
        return [(schedule_id, int(score)) for schedule_id, score in rows]

    async def next_schedule_ms(self) -> float | None:
        """When the soonest schedule is due (ms), None when none is running."""
        rows = await self._guard(self.redis.zrange(self.keys.schedules, 0, 0, withscores=True))
        return None if not rows or rows[0][1] == _schedules.NEVER else float(rows[0][1])

    async def claim_tick(self, schedule_id: str, tick_ms: int) -> str | None:
        """Fire one due tick if no one else has: the job id it enqueued, None if it lost the
        race, the schedule changed, or a missed tick was skipped."""
        row = await self._guard(self.redis.hgetall(self.keys.schedule(schedule_id)))
        if not row:
            return None
        schedule = _schedules.schedule_from_hash(schedule_id, row, tick_ms, [])
        now = self.now_ms()
        run, next_ms, runs = _schedules.plan_claim(
            schedule, _schedules.anchor_of(row), tick_ms, now
        )
        job_id = _schedules.tick_job_id(schedule_id, tick_ms) if run else ""
        reply = await self._claim(
            schedule_id, expected=tick_ms, next_ms=next_ms, runs=runs, job_id=job_id,
            job=schedule.job,
        )  # fmt: skip
        return reply[1] or None if reply[0] == "ok" else None

    async def _claim(
        self, schedule_id: str, *, expected: int | str, next_ms: int, runs: int, job_id: str,
        job: JobSpec,
    ) -> list[str]:  # fmt: skip
        now = self.now_ms()
        job_args = _schedules.NO_JOB
        if job_id:
            job_args = _schedules.job_args(job_id, job, now, build_message(job_id, job))
        args: dict[str, ScriptArg] = {
            "schedule_id": schedule_id, "expected_ms": expected, "next_ms": next_ms,
            "runs": runs, "now_ms": now, "runs_kept": _schedules.RUNS_KEPT, **job_args,
        }  # fmt: skip
        reply: list[str] = await self._guard(self.scripts.run("schedule-claim", args))
        return reply

    async def _guard(self, awaitable: Any) -> Any:
        """Await a Redis call, turning connection failures into QueueUnavailableError and
        Redis's own out-of-memory refusal into QueueFullError."""
        try:
            return await awaitable
        except PoolExhaustedError as exc:  # before REDIS_DOWN, whose ConnectionError it is
            raise ConnectionPoolExhaustedError(
                f"{exc}; nothing was changed: retry, or spread the load over more processes",
                {"reason": str(exc)},
            ) from exc
        except REDIS_DOWN as exc:
            raise QueueUnavailableError(
                "the queue's Redis server is unreachable; nothing was changed",
                {"reason": str(exc)},
            ) from exc
        except OutOfMemoryError as exc:
            # Every script checks memory before its first write, so a refused one wrote nothing.
            raise QueueFullError(
                "the queue's Redis server is out of memory (maxmemory reached); nothing was "
                "changed: retry later, once workers have drained the queue",
                {"reason": str(exc)},
            ) from exc


def _ms_of(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp() * 1000)


def _memory_refusal(used: int, maxmemory: int, config: QueueConfig) -> QueueFullError:
    limit = MemoryUsage.of(used, maxmemory, config.enqueue_max_memory_share).enqueue_limit_bytes
    return QueueFullError(
        f"the queue is full: Redis uses {used / maxmemory:.0%} of its {maxmemory} bytes of "
        f"memory and jobs are refused above {config.enqueue_max_memory_share:.0%} "
        "(ENQUEUE_MAX_MEMORY_SHARE), so the jobs already queued can still finish; nothing was "
        "enqueued: retry later, once workers have drained the queue",
        {"used_memory_bytes": used, "limit_bytes": limit, "maxmemory_bytes": maxmemory},
    )


# --- decoding ------------------------------------------------------------------------------------


def parse_event(message: dict[str, Any] | None) -> dict[str, Any] | None:
    """The JSON body of a pub/sub message from `JobQueue.subscribe`, or None for anything else
    (subscribe confirmations, timeouts, malformed data)."""
    if message is None or message.get("type") != "message":
        return None
    try:
        payload = json.loads(message["data"])
    except (TypeError, ValueError):
        return None
    return payload if isinstance(payload, dict) and isinstance(payload.get("state"), str) else None


def _active_order(job: Job) -> tuple[bool, datetime, str]:
    """Running jobs by start, then reserved ones by creation (a reserved job may carry an
    earlier attempt's start)."""
    if job.reserved or job.started_at is None:
        return True, job.created_at, job.id
    return False, job.started_at, job.id


def _job_from_hash(job_id: str, row: dict[str, str]) -> Job:
    message = json.loads(row["msg"])
    labels = message.get("labels", {})
    kwargs = message.get("kwargs", {})
    data = kwargs["data"] if set(kwargs) == {"data"} and isinstance(kwargs["data"], dict) else {
        "args": message.get("args", []), "kwargs": kwargs
    }  # fmt: skip
    result = row.get("result")
    return Job(
        id=job_id,
        type=row["type"],
        state=JobState(row["state"]),
        priority=Priority(int(row["priority"])),
        data=data,
        attempts_made=int(row.get("attempts", 0)),
        max_attempts=int(row.get("max_attempts", 1)),
        backoff=Backoff.model_validate_json(labels["backoff"]) if "backoff" in labels else None,
        timeout_seconds=float(labels["timeout"]) if "timeout" in labels else None,
        created_at=from_ms(row["created"]),
        scheduled_for=from_ms(row.get("due", row["created"])),
        started_at=from_ms(row.get("started")),
        finished_at=from_ms(row.get("finished")),
        # dequeue writes no start: the worker records it when the attempt's code starts.
        reserved=row["state"] == JobState.PROCESSING and "attempt_started" not in row,
        progress=float(row.get("progress", 0)),
        progress_message=row.get("progress_msg") or None,
        result=json.loads(result) if result else None,
        error=row.get("error"),
        traceback=row.get("traceback") or None,
        worker_id=row.get("worker"),
        stalls=int(row.get("stalls", 0)),
        idempotency_key=row.get("idem"),
        group=row.get("group"),
        timeline=_parse_timeline(row.get("timeline", "")),
        parent_id=row.get("parent"),
        waiting_for=max(0, int(row["waiting"])) if "waiting" in row else None,
        on_child_failure=row.get("on_child_failure"),
    )


def _new_job(job_id: str, spec: JobSpec, state: JobState, now: int, created: datetime) -> Job:
    # `created` is read once per call, not once per job. (Validated construction is kept: in
    # pydantic 2 it is about twice as fast as `model_construct`, which runs in Python.)
    due = from_ms(now + int(spec.delay_seconds * 1000)) if spec.delay_seconds else created
    return Job(
        id=job_id,
        type=spec.type,
        state=state,
        priority=spec.priority,
        data=spec.data,
        attempts_made=0,
        max_attempts=spec.attempts,
        backoff=spec.backoff,
        timeout_seconds=spec.timeout_seconds,
        created_at=created,
        scheduled_for=due or created,
        idempotency_key=spec.idempotency_key,
        group=spec.group,
        timeline=[TimelineEntry(state=state, at=created)],
    )


def _parse_timeline(raw: str) -> list[TimelineEntry]:
    entries = []
    for item in filter(None, raw.split(";")):
        state, _, rest = item.partition("@")
        at, _, note = rest.partition(":")
        if not at.isdigit():
            continue  # the head of a timeline cut short for length
        entries.append(TimelineEntry(state=JobState(state), at=from_ms(at), note=note or None))
    return entries


def _worker_from_hash(row: dict[str, str]) -> WorkerInfo:
    current: list[str] = json.loads(row.get("jobs", "[]"))
    return WorkerInfo(
        id=row["id"],
        host=row["host"],
        pid=int(row["pid"]),
        started_at=from_ms(row["started"]),
        last_heartbeat=from_ms(row["heartbeat"]),
        processed=int(row.get("processed", 0)),
        failed=int(row.get("failed", 0)),
        concurrency=int(row.get("concurrency", 0)),
        current_jobs=current,
        running=int(row.get("running", len(current))),
        reserved=int(row.get("reserved", 0)),
        running_by_type=json.loads(row["running_types"]) if "running_types" in row else None,
        stalled=row.get("stalled", "0") == "1",
        stalls=int(row.get("stalls", 0)),
    )


def _encode_cursor(score: float, member: str) -> str:
    return f"{score:.0f}:{member}"


def _decode_cursor(cursor: str | None) -> tuple[float, str] | None:
    if not cursor:
        return None
    score, _, member = cursor.partition(":")
    # Every score this API pages by is a non-negative integer below 2^53 (a pending score is
    # under 100 * 2^44, a timestamp in ms has 13 digits), written out in full by _encode_cursor.
    if score.isdigit() and len(score) <= MAX_CURSOR_DIGITS and int(score) < 2**53:
        return float(score), member
    raise _bad_cursor(cursor)


def _decode_offset(cursor: str | None) -> int:
    # The active list pages by offset; it holds at most the fleet's concurrency.
    if not cursor:
        return 0
    if cursor.isdigit() and len(cursor) <= MAX_CURSOR_DIGITS:
        return int(cursor)
    raise _bad_cursor(cursor)


def _bad_cursor(cursor: str) -> InvalidRequestError:
    message = "not a cursor this API returned; pass next_cursor from the last page"
    return InvalidRequestError(
        f"cursor {cursor!r} is {message}",
        {"cursor": cursor, "errors": [{"field": "cursor", "in": "query", "message": message}]},
    )


def _is_after(row: tuple[str, float], after: tuple[float, str], newest_first: bool) -> bool:
    member, score = row
    if score != after[0]:
        return True
    # Members with equal scores are ordered lexicographically (reversed when newest first).
    return member < after[1] if newest_first else member > after[1]


def _type_score(job: Job) -> float:
    return job.created_at.timestamp() * 1000
