"""Waiting taskiq-redis messages moved into this queue, each exactly once, crash or no crash.

A source is a `ListQueueBroker` list (taskiq-redis LPUSHes, its workers BRPOP from the right,
so the oldest message is at the right) or a `RedisStreamBroker` stream (XADD of `{data: msg}`,
read by a consumer group, "taskiq" by default). Each message is taskiq's TaskiqMessage JSON.

Order of a batch: read, enqueue (one `enqueue` script call), only then remove from the source.
A crash between the two leaves the batch in the source; the re-run enqueues it again and the
queue answers "exists" for each message, because the job id is the message's task id and the
idempotency key is derived from the message's own id. So nothing is lost and nothing doubled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from taskiq.message import BrokerMessage, TaskiqMessage

from service.jobs.registry import JobRegistry
from service.queue.models import JobSpec
from service.queue.queue import JobQueue
from service.settings import Settings
from service.worker.taskiq_broker import spec_from_message

# The consumer the import reads a stream as: its pending entries are the batch a killed import
# read and did not finish, taken up again first by the next run.
IMPORT_CONSUMER = "jobqueue-import"
# RedisStreamBroker's default consumer_group_name.
TASKIQ_GROUP = "taskiq"

SourceKind = Literal["list", "stream"]


@dataclass(frozen=True)
class Source:
    """Where the waiting messages are."""

    kind: SourceKind
    name: str
    group: str = TASKIQ_GROUP


@dataclass(frozen=True)
class SourceMessage:
    """One message as found in the source: its source id (stream entry id, or the task id for
    a list), its raw bytes, and the taskiq message when it parses."""

    source_id: str
    raw: bytes
    message: TaskiqMessage | None


@dataclass
class ImportSummary:
    """What one run did."""

    imported: int = 0  # new jobs
    already_imported: int = 0  # a previous run's jobs, now removed from the source
    left_invalid: int = 0  # not taskiq messages: left in the source
    left_pending: int = 0  # stream entries held by other consumers: left in the source
    by_task: Counter[str] = field(default_factory=Counter)

    @property
    def left_behind(self) -> int:
        """Messages still in the source after the run."""
        return self.left_invalid + self.left_pending


def _parse(source_id: str, raw: bytes) -> SourceMessage:
    try:
        message: TaskiqMessage | None = TaskiqMessage.model_validate_json(raw)
    except (ValidationError, ValueError):
        message = None
    return SourceMessage(source_id, raw, message)


class TaskiqRedisImport:
    """One import from one source into one queue."""

    def __init__(
        self,
        source_redis: Redis,
        source: Source,
        *,
        queue: JobQueue,
        settings: Settings,
        registry: JobRegistry,
        batch_size: int = 500,
    ) -> None:
        # Any: redis-py types each reply as the union of every protocol's shapes; these are
        # RESP2 replies of a client without decode_responses (the messages are bytes).
        self.redis: Any = source_redis
        self.source = source
        self.queue = queue
        self.settings = settings
        self.registry = registry
        self.batch_size = batch_size

    # --- counting (dry run, and the check before anything moves) --------------------------------

    async def count_by_task(self) -> Counter[str]:
        """Waiting messages per task name ("<invalid>" for ones that are not taskiq messages).
        For a stream: entries its group has not read yet, and this import's unfinished batch;
        entries other consumers hold are `pending_elsewhere`."""
        counts: Counter[str] = Counter()
        if self.source.kind == "list":
            length = int(await self.redis.llen(self.source.name))
            for start in range(0, length, self.batch_size):
                rows = await self.redis.lrange(self.source.name, start, start + self.batch_size - 1)
                counts.update(_task_name(_parse_list(raw)) for raw in rows)
            return counts
        async for entry in self._stream_entries_after(await self._group_last_read()):
            counts[_task_name(entry)] += 1
        for entry in await self._own_pending():
            counts[_task_name(entry)] += 1
        return counts

    async def pending_elsewhere(self) -> int:
        """Stream entries other consumers (taskiq-redis workers) read and did not ack: they
        may be running there now, so the import leaves them alone."""
        if self.source.kind == "list" or not await self._group_exists():
            return 0
        info = await self.redis.xpending(self.source.name, self.source.group)
        consumers = {_text(c["name"]): int(c["pending"]) for c in info.get("consumers") or []}
        return int(info.get("pending", 0)) - consumers.get(IMPORT_CONSUMER, 0)

    async def _group_exists(self) -> bool:
        if not await self.redis.exists(self.source.name):
            return False
        groups = await self.redis.xinfo_groups(self.source.name)
        return any(_text(g["name"]) == self.source.group for g in groups)

    async def _group_last_read(self) -> str:
        """The id after which the group has read nothing ("0" without a group: everything)."""
        if not await self._group_exists():
            return "0"
        groups = await self.redis.xinfo_groups(self.source.name)
        group = next(g for g in groups if _text(g["name"]) == self.source.group)
        return _text(group["last-delivered-id"])

    async def _own_pending(self) -> list[SourceMessage]:
        if not await self._group_exists():
            return []
        rows = await self.redis.xpending_range(
            self.source.name, self.source.group, "-", "+", 1_000_000, consumername=IMPORT_CONSUMER
        )
        found = []
        for row in rows:
            entry_id = _text(row["message_id"])
            for read_id, fields in await self.redis.xrange(self.source.name, entry_id, entry_id):
                found.append(_parse(_text(read_id), fields.get(b"data", b"")))
        return found

    async def _stream_entries_after(self, last_read: str) -> Any:
        start = "(" + last_read if last_read != "0" else "-"
        while True:
            rows = await self.redis.xrange(self.source.name, start, "+", count=self.batch_size)
            for entry_id, fields in rows:
                yield _parse(_text(entry_id), fields.get(b"data", b""))
            if len(rows) < self.batch_size:
                return
            start = "(" + _text(rows[-1][0])

    def unknown_names(self, counts: Counter[str]) -> list[str]:
        """Task names no registered job type answers to."""
        known = set(self.registry.names())
        return sorted(name for name in counts if name != INVALID and name not in known)

    # --- moving ----------------------------------------------------------------------------------

    async def run(self, on_batch: Callable[[int], None] = lambda n: None) -> ImportSummary:
        """Move every waiting message; `on_batch(n)` after each batch of n source messages."""
        summary = ImportSummary()
        if self.source.kind == "list":
            await self._run_list(summary, on_batch)
        else:
            await self._run_stream(summary, on_batch)
        return summary

    async def _run_list(self, summary: ImportSummary, on_batch: Callable[[int], None]) -> None:
        name = self.source.name
        while True:
            # The oldest messages are at the right; invalid ones stay there, so skip past them.
            end = -1 - summary.left_invalid
            rows = await self.redis.lrange(name, end - self.batch_size + 1, end)
            if not rows:
                return
            batch = [_parse_list(raw) for raw in reversed(rows)]  # oldest first
            moved = await self._enqueue(batch, summary)
            pipe = self.redis.pipeline(transaction=False)
            for entry in moved:
                pipe.lrem(name, -1, entry.raw)  # from the right: exactly this message, once
            await pipe.execute()
            on_batch(len(batch))

    async def _run_stream(self, summary: ImportSummary, on_batch: Callable[[int], None]) -> None:
        name, group = self.source.name, self.source.group
        try:
            # No group yet: no worker ever read the stream, so every entry is waiting.
            await self.redis.xgroup_create(name, group, id="0", mkstream=False)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        # A killed run's unfinished batch first (this consumer's pending entries, from "0"
        # onwards), then entries the group has not read yet (">").
        cursor: str | None = "0"
        while True:
            reply: Any = await self.redis.xreadgroup(
                group, IMPORT_CONSUMER, {name: cursor or ">"}, count=self.batch_size
            )
            rows = reply[0][1] if reply else []
            if not rows:
                if cursor is None:
                    break
                cursor = None
                continue
            if cursor is not None:
                cursor = _text(rows[-1][0])
            # An entry deleted since it was read comes back with no fields: nothing to move.
            batch = [_parse(_text(i), f.get(b"data", b"")) for i, f in rows if f]
            moved = await self._enqueue(batch, summary)
            ids = [entry.source_id for entry in moved]
            if ids:
                pipe = self.redis.pipeline(transaction=True)
                pipe.xack(name, group, *ids)
                pipe.xdel(name, *ids)
                await pipe.execute()
            on_batch(len(batch))
        summary.left_pending += await self.pending_elsewhere()

    async def _enqueue(
        self, batch: list[SourceMessage], summary: ImportSummary
    ) -> list[SourceMessage]:
        """Enqueue a batch in one call; returns the messages now safely in the queue."""
        valid = [entry for entry in batch if entry.message is not None]
        summary.left_invalid += len(batch) - len(valid)
        if not valid:
            return []
        specs = [self._spec(entry) for entry in valid]
        ids = [entry.message.task_id for entry in valid if entry.message is not None]
        results = await self.queue.enqueue_many(specs, ids)
        for entry, result in zip(valid, results, strict=True):
            if result.created:
                summary.imported += 1
                summary.by_task[_task_name(entry)] += 1
            else:
                summary.already_imported += 1
        return valid

    def _spec(self, entry: SourceMessage) -> JobSpec:
        message = entry.message
        assert message is not None, "filtered by the caller"
        kicked = BrokerMessage(
            task_id=message.task_id,
            task_name=message.task_name,
            message=entry.raw,
            labels=message.labels,
        )
        # The same options a kiq() to our broker would give it (service/worker/taskiq_broker).
        spec, _ = spec_from_message(kicked, self.settings, self.registry)
        key = f"taskiq-redis:{self.source.kind}:{self.source.name}:{entry.source_id}"
        return spec.model_copy(update={"idempotency_key": key})


INVALID = "<invalid>"


def _parse_list(raw: bytes) -> SourceMessage:
    """A list message: the task id is the only id it has."""
    entry = _parse("", raw)
    if entry.message is None:
        return entry
    return SourceMessage(entry.message.task_id, raw, entry.message)


def _task_name(entry: SourceMessage) -> str:
    return entry.message.task_name if entry.message is not None else INVALID


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
