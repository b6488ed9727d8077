"""Fair-share groups (docs/queue.md "Groups"): jobs enqueued with a `group` (a tenant) wait in
their group's own pending set, and dequeue serves groups round robin within a priority level,
so a group with a large backlog does not starve one with a few jobs. Per-group pause, rate and
concurrency live in one hash (`QueueKeys.group_state`); the group-set script keeps the group's
place in the ready set in step with them.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.queue.errors import InvalidRequestError
from service.queue.flow_control import LaneLimits, RateLimit
from service.queue.options import check_group_name
from service.queue.queue import MAX_PAGE, JobQueue
from service.queue.scripts import ScriptArg


@dataclass(frozen=True)
class GroupInfo:
    """One group as `GET /groups` shows it."""

    name: str
    pending: int
    running: int
    paused: bool
    limits: LaneLimits


@dataclass(frozen=True)
class GroupStats:
    """What the metrics task publishes about groups: how many have backlog, and how much of
    all grouped backlog the largest one holds (0 when none has any)."""

    with_backlog: int
    grouped_pending: int
    largest_pending: int
    paused_pending: int = 0  # pending jobs of paused groups: not scaling backlog

    @property
    def largest_share(self) -> float:
        """The largest group's share of grouped pending jobs, 0..1."""
        return self.largest_pending / self.grouped_pending if self.grouped_pending else 0.0


def checked_group(group: str) -> str:
    """`group` if it is a valid name, else InvalidRequestError (422) saying what to fix."""
    try:
        return check_group_name(group)
    except ValueError as exc:
        raise InvalidRequestError(
            str(exc),
            {"group": group, "errors": [{"field": "group", "in": "path", "message": str(exc)}]},
        ) from exc


class Groups:
    """The groups of one queue: settings, listing and the figures metrics publish."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue

    async def _set(self, group: str, setting: str, value: str) -> None:
        args: dict[str, ScriptArg] = {
            "group": checked_group(group), "setting": setting, "value": value
        }  # fmt: skip
        await self.queue._guard(self.queue.scripts.run("group-set", args))

    async def pause(self, group: str) -> None:
        """No worker starts a job of `group` until `resume`; enqueues go on."""
        await self._set(group, "paused", "1")

    async def resume(self, group: str) -> None:
        await self._set(group, "paused", "")

    async def set_rate(self, group: str, rate: RateLimit | None) -> None:
        """Limit starts of `group` across all workers; None removes the limit."""
        value = "" if rate is None else f"{rate.limit},{round(rate.per_seconds * 1000)}"
        await self._set(group, "rate", value)

    async def set_concurrency(self, group: str, concurrency: int | None) -> None:
        """Limit jobs of `group` processing at once across all workers; None: no limit."""
        await self._set(group, "concurrency", "" if concurrency is None else str(concurrency))

    async def get(self, group: str) -> GroupInfo:
        """One group (all zeros and no limits for a group the queue has never seen)."""
        return (await self._read([checked_group(group)]))[0]

    async def list_groups(self, limit: int = 100, offset: int = 0) -> tuple[list[GroupInfo], int]:
        """Groups with pending or running jobs or settings, largest backlog first (ties by
        name), and how many there are. A page is read at an offset: while backlogs change,
        a group may move between pages."""
        limit = max(1, min(limit, MAX_PAGE))
        keys = self.queue.keys
        pipe = self.queue.redis.pipeline(transaction=False)
        pipe.zrevrange(keys.groups, offset, offset + limit - 1)
        pipe.zcard(keys.groups)
        names, total = await self.queue._guard(pipe.execute())
        return await self._read(list(names)), int(total)

    async def _read(self, names: list[str]) -> list[GroupInfo]:
        if not names:
            return []
        keys = self.queue.keys
        pipe = self.queue.redis.pipeline(transaction=False)
        for name in names:
            pipe.zcard(keys.group(name))
            pipe.hmget(
                keys.group_state,
                f"running|{name}", f"paused|{name}", f"rate|{name}", f"concurrency|{name}",
            )  # fmt: skip
        replies = await self.queue._guard(pipe.execute())
        found = []
        for i, name in enumerate(names):
            pending, (running, paused, rate, concurrency) = replies[2 * i : 2 * i + 2]
            found.append(
                GroupInfo(
                    name=name,
                    pending=int(pending),
                    running=int(running or 0),
                    paused=paused is not None,
                    limits=LaneLimits(
                        rate=_rate(rate),
                        concurrency=None if concurrency is None else int(concurrency),
                    ),
                )
            )
        return found

    async def stats(self) -> GroupStats:
        """Groups with backlog, grouped pending jobs and the largest group's backlog (three
        O(log groups) reads in one round trip), and the paused groups' backlog (their scores in
        `groups`: one more round trip, only while some group is paused)."""
        keys = self.queue.keys
        pipe = self.queue.redis.pipeline(transaction=False)
        pipe.zcount(keys.groups, "(0", "+inf")
        pipe.zcard(keys.groups_pending)
        pipe.zrevrange(keys.groups, 0, 0, withscores=True)
        pipe.smembers(keys.groups_paused)
        with_backlog, grouped, largest, paused = await self.queue._guard(pipe.execute())
        paused_pending = 0
        if paused:
            scores = await self.queue._guard(self.queue.redis.zmscore(keys.groups, list(paused)))
            paused_pending = sum(int(score or 0) for score in scores)
        return GroupStats(
            with_backlog=int(with_backlog),
            grouped_pending=int(grouped),
            largest_pending=int(largest[0][1]) if largest else 0,
            paused_pending=paused_pending,
        )


def _rate(value: str | None) -> RateLimit | None:
    if value is None:
        return None
    limit, per_ms = value.split(",")
    return RateLimit(limit=int(limit), per_seconds=int(per_ms) / 1000)
