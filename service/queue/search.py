"""Job search for the list API and bulk actions: filter by state, type, priority, creation
time and text, newest or oldest first, paged by cursor.

Every retained job is in exactly one per-type index scored by creation ms (keys.type_index),
so a search walks those indexes merged in creation order. Each call reads at most a bounded
window of index entries (SCAN_WINDOW with a filter, `limit` without one) and the hashes of
those jobs, never the whole queue: with a selective filter a page may hold fewer than `limit`
jobs while `next_cursor` is set, and the caller follows the cursor until it is null.
"""

from __future__ import annotations

import heapq
import json
from dataclasses import dataclass
from datetime import datetime

from service.queue.models import Job, Page
from service.queue.queue import MAX_PAGE, JobQueue, _decode_cursor, _encode_cursor
from service.queue.states import JobState, Priority

# Index entries read per call when a filter may drop some: bounds the cost of a text search
# (one HGETALL and a substring test per entry) whatever the queue's size.
SCAN_WINDOW = 2000


@dataclass(frozen=True)
class JobFilter:
    """What a search keeps; None fields match every job."""

    state: JobState | None = None
    type: str | None = None
    priority: Priority | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    # An exact job id or idempotency key, or text contained in the job's data or error.
    text: str | None = None

    @property
    def drops_jobs(self) -> bool:
        """Whether some index entries in the time range may not match."""
        return any(v is not None for v in (self.state, self.priority, self.text))

    def keeps(self, job: Job) -> bool:
        """Whether `job` matches the state, priority and text parts."""
        if self.state is not None and job.state is not self.state:
            return False
        if self.priority is not None and job.priority != self.priority:
            return False
        if self.text is not None:
            haystack = json.dumps(job.data, ensure_ascii=False) + (job.error or "")
            return self.text in haystack
        return True


Row = tuple[str, float]


async def search(
    queue: JobQueue,
    where: JobFilter,
    limit: int = 50,
    cursor: str | None = None,
    newest_first: bool = True,
) -> Page[Job]:
    """One page of jobs matching `where`, in creation order; see the module docstring."""
    limit = max(1, min(limit, MAX_PAGE))
    if where.text is not None and cursor is None:
        exact = await _exact_match(queue, where)
        if exact is not None:
            return Page(items=[exact], next_cursor=None)
    window = SCAN_WINDOW if where.drops_jobs else limit
    after = _decode_cursor(cursor)
    types = [where.type] if where.type is not None else await _type_names(queue)
    per_index = [
        await _index_rows(
            queue, job_type=t, after=after, count=window + 1, where=where, newest_first=newest_first
        )
        for t in types
    ]
    merged = list(
        heapq.merge(*per_index, key=lambda row: _order(row, newest_first))
    )  # each index is already in this order
    scanned = merged[:window]
    more = len(merged) > window
    jobs = {job.id: job for job in await queue.get_many([member for member, _ in scanned])}
    items: list[Job] = []
    for index, (member, score) in enumerate(scanned):
        job = jobs.get(member)
        if job is None or not where.keeps(job):
            continue
        items.append(job)
        if len(items) == limit:
            rest = index + 1 < len(scanned) or more
            return Page(items=items, next_cursor=_encode_cursor(score, member) if rest else None)
    last = scanned[-1] if scanned else None
    return Page(
        items=items, next_cursor=_encode_cursor(last[1], last[0]) if more and last else None
    )


def _order(row: Row, newest_first: bool) -> tuple[float, str] | tuple[float, _Reversed]:
    member, score = row
    return (-score, _Reversed(member)) if newest_first else (score, member)


class _Reversed(str):
    """A member compared backwards: newest first, equal scores come in reverse lexical order
    (how ZREVRANGEBYSCORE returns them)."""

    __slots__ = ()

    def __lt__(self, other: str) -> bool:
        return str.__gt__(self, other)

    def __gt__(self, other: str) -> bool:
        return str.__lt__(self, other)


async def _exact_match(queue: JobQueue, where: JobFilter) -> Job | None:
    """The job whose id or idempotency key is `where.text`, if it matches the other parts."""
    assert where.text is not None
    found = await queue.get_many([where.text])
    if not found:
        owner = await queue._guard(queue.redis.get(queue.keys.idempotency_prefix + where.text))
        found = await queue.get_many([owner]) if owner else []
    if not found:
        return None
    job = found[0]
    created = int(job.created_at.timestamp() * 1000)
    in_range = (where.since_ms is None or created >= where.since_ms) and (
        where.until_ms is None or created <= where.until_ms
    )
    plain = JobFilter(state=where.state, priority=where.priority)
    typed = where.type is None or job.type == where.type
    return job if in_range and typed and plain.keeps(job) else None


async def _type_names(queue: JobQueue) -> list[str]:
    """Every type with jobs counted (the type-count hash has a field per type and state)."""
    fields: list[str] = await queue._guard(queue.redis.hkeys(queue.keys.type_counts))
    return sorted({f.rpartition("|")[0] for f in fields})


async def _index_rows(
    queue: JobQueue,
    *,
    job_type: str,
    after: tuple[float, str] | None,
    count: int,
    where: JobFilter,
    newest_first: bool,
) -> list[Row]:
    """Up to `count` entries of one type index past `after`, within the time range.

    One script call, O(log n + count): the entries tied with the cursor's score (a bulk
    enqueue shares one millisecond) are skipped by rank, whether or not the cursor's job is in
    this index (lua/page-1.lua), so no page costs more as the queue grows.
    """
    low = "-inf" if where.since_ms is None else str(where.since_ms)
    high = "+inf" if where.until_ms is None else str(where.until_ms)
    return await queue.page_of(
        queue.keys.type_index(job_type), after, count, newest_first, (low, high)
    )


def parse_time(value: str) -> int:
    """Epoch ms from an ISO-8601 time or a whole number of epoch ms; ValueError otherwise."""
    if value.isdigit():
        return int(value)
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("give a time zone (e.g. Z or +00:00)")
    return int(moment.timestamp() * 1000)
