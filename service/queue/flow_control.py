"""Flow control: pause and resume (the whole queue or one job type), global rate and
concurrency limits per job type, promote and reprioritise (docs/queue.md "Flow control").

Settings live in one hash (`QueueKeys.flow`); a paused or limited type is a *lane* with its own
pending set, which the dequeue script considers only while the lane is ready, so a held lane
never blocks the others. The flow-set script keeps lane membership in step with the settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.queue.errors import InvalidTransitionError, JobNotFoundError
from service.queue.queue import JobQueue, now_ms
from service.queue.scripts import ScriptArg
from service.queue.states import Priority

QUEUE_PAUSED = "queue_paused"
# A concurrency set to "no limit" through the API, so a code default does not come back.
NO_LIMIT = "none"


@dataclass(frozen=True)
class RateLimit:
    """At most `limit` starts in any window of `per_seconds`, across all workers."""

    limit: int
    per_seconds: float


@dataclass(frozen=True)
class LaneLimits:
    """The limits in force for one lane (None: no such limit)."""

    rate: RateLimit | None
    concurrency: int | None


@dataclass(frozen=True)
class FlowState:
    """What is paused and limited, as dequeue sees it."""

    queue_paused: bool
    paused_lanes: frozenset[str]
    limits: dict[str, LaneLimits]

    def limits_of(self, lane: str) -> LaneLimits:
        """The lane's limits (none when it has none)."""
        return self.limits.get(lane, LaneLimits(rate=None, concurrency=None))


def _field(kind: str, lane: str) -> str:
    return f"{kind}|{lane}"


class FlowControl:
    """Flow settings of one queue."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue

    async def _set(self, field: str, value: str, lane: str = "") -> None:
        args: dict[str, ScriptArg] = {"field": field, "value": value, "lane": lane}
        await self.queue._guard(self.queue.scripts.run("flow-set", args))

    async def pause_queue(self) -> None:
        """No worker starts any job until `resume_queue`; enqueues are still accepted."""
        await self._set(QUEUE_PAUSED, "1")

    async def resume_queue(self) -> None:
        await self._set(QUEUE_PAUSED, "")

    async def pause_lane(self, lane: str) -> None:
        """No worker starts a job of `lane` (a job type) until `resume_lane`."""
        await self._set(_field("paused", lane), "1", lane)

    async def resume_lane(self, lane: str) -> None:
        await self._set(_field("paused", lane), "", lane)

    async def set_rate(self, lane: str, rate: RateLimit | None) -> None:
        """Limit starts of `lane` across all workers; None removes the limit."""
        value = "" if rate is None else f"{rate.limit},{round(rate.per_seconds * 1000)}"
        await self._set(_field("rate", lane), value, lane)

    async def set_concurrency(self, lane: str, concurrency: int | None) -> None:
        """Limit jobs of `lane` processing at once across all workers; None means no limit,
        even where the job type declares one in code."""
        await self._set(
            _field("concurrency", lane), NO_LIMIT if concurrency is None else str(concurrency), lane
        )

    async def resync_lane(self, lane: str) -> None:
        """Re-check whether `lane` needs its own set after its code default changed."""
        await self._set("", "", lane)

    async def state(self) -> FlowState:
        """The settings in force: API values over the defaults declared in code."""
        pipe = self.queue.redis.pipeline(transaction=False)
        pipe.hgetall(self.queue.keys.flow)
        pipe.hgetall(self.queue.keys.type_limits)
        flow, defaults = await self.queue._guard(pipe.execute())
        paused: set[str] = set()
        rates: dict[str, RateLimit] = {}
        concurrency: dict[str, int | None] = {k: int(v) for k, v in defaults.items()}
        for name, value in flow.items():
            kind, _, lane = name.partition("|")
            if kind == "paused":
                paused.add(lane)
            elif kind == "rate":
                limit, per_ms = value.split(",")
                rates[lane] = RateLimit(limit=int(limit), per_seconds=int(per_ms) / 1000)
            elif kind == "concurrency":
                concurrency[lane] = None if value == NO_LIMIT else int(value)
        lanes = set(rates) | set(concurrency)
        return FlowState(
            queue_paused=QUEUE_PAUSED in flow,
            paused_lanes=frozenset(paused),
            limits={
                lane: LaneLimits(rate=rates.get(lane), concurrency=concurrency.get(lane))
                for lane in lanes
            },
        )

    async def promote(self, job_id: str) -> None:
        """Make a delayed job pending now; InvalidTransitionError when it is not delayed."""
        args: dict[str, ScriptArg] = {"job_id": job_id, "now_ms": now_ms(self.queue.clock)}
        reply = await self.queue._guard(self.queue.scripts.run("promote", args))
        _check(job_id, reply, "promote")

    async def set_priority(self, job_id: str, priority: Priority) -> None:
        """Move a pending or delayed job to another priority, keeping its FIFO place."""
        args: dict[str, ScriptArg] = {"job_id": job_id, "priority": int(priority)}
        reply = await self.queue._guard(self.queue.scripts.run("reprioritise", args))
        _check(job_id, reply, "reprioritise")


def _check(job_id: str, reply: list[str], verb: str) -> None:
    if reply[0] == "missing":
        raise JobNotFoundError(f"no job with id {job_id!r}", {"id": job_id})
    if reply[0] != "ok":
        raise InvalidTransitionError(
            f"cannot {verb} job {job_id!r}: it is {reply[0]}", {"id": job_id, "status": reply[0]}
        )
