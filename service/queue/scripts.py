"""The queue's Lua scripts, loaded once per Redis client with `register_script`, and called by
the names of their keys and arguments.

Each `lua/<name>-<key count>.lua` file changes several keys in one atomic step; its header names
every KEYS and ARGV entry. `_lib.lua` holds helpers prepended to each (Redis has no includes).
`DECLARATIONS` below states each script's KEYS and ARGV once, in order: a call names its
arguments (`args={"now_ms": ...}`) and never lists keys, which are looked up by name on the
queue's QueueKeys (or, for the few that depend on the call, such as this minute's stats key,
given by name). tests/queue/test_script_declarations.py checks every header against its
declaration, so a key reordered in one of them fails the tests instead of the queue.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from service.queue.keys import QueueKeys

LUA_DIR = Path(__file__).parent / "lua"
_SCRIPT_FILE = re.compile(r"^(?P<name>[a-z-]+)-(?P<keys>\d+)\.lua$")

ScriptArg = str | int | float


@dataclass(frozen=True)
class ScriptDeclaration:
    """A script's KEYS and fixed ARGV, in order, each by the name its header gives it.

    A key's name is a QueueKeys property (`pending`), or a key that depends on the call (`job`,
    `logs`, `stats_minute`), passed by name with it. `more_args` says what may follow the
    fixed ARGV (per job: ...), None when nothing may.
    """

    keys: tuple[str, ...]
    args: tuple[str, ...]
    more_args: str | None = None


# Keys most scripts take: the per-job event stream prefix and the live-events channel.
_EVENTS = ("events_prefix", "events")
# The keys of fair-share groups (docs/queue.md "Groups"), taken by every script that may make a
# grouped job pending or end one's run; `group_keys` in _lib.lua reads them in this order.
GROUP_KEYS = (
    "group_prefix",
    "groups",
    "groups_ready",
    "groups_held",
    "group_state",
    "groups_pending",
)
# Keys of the flow helpers in _lib.lua that settle, fail or cancel a flow parent.
_FLOW = ("waiting_children", "children_prefix", "child_results_prefix", "child_failures_prefix")

DECLARATIONS: dict[str, ScriptDeclaration] = {
    "cancel": ScriptDeclaration(
        keys=("job_prefix", "pending", "delayed", "active", "cancelled", "type_counts",
              "cancel_channel", "expiry", "type_index_prefix", "idempotency_prefix",
              "logs_prefix", "marker", *_EVENTS, "lane_prefix", "dedupe_prefix", "sequence",
              *GROUP_KEYS, "failed", "lanes", *_FLOW, "stats_minute"),
        args=("job_id", "now_ms", "trim_limit", "stats_ttl_s"),
    ),
    "dequeue": ScriptDeclaration(
        keys=("pending", "delayed", "active", "marker", "sequence", "type_counts",
              "type_limits", "job_prefix", *_EVENTS, "flow", "lanes", "lane_prefix",
              "lane_starts_prefix", *GROUP_KEYS, "group_starts_prefix"),
        args=("now_ms", "lease_ms", "worker_id", "max_jobs", "promote_limit"),
    ),
    "enqueue": ScriptDeclaration(
        keys=("job_prefix", "pending", "delayed", "marker", "sequence", "type_counts",
              "type_index_prefix", "idempotency_prefix", *_EVENTS, "lanes", "lane_prefix",
              "dedupe_prefix", *GROUP_KEYS),
        args=("now_ms", "max_memory_share"),
        more_args="11 per job: id, type, priority, message, due ms, attempts, retention x2, "
        "idempotency key, dedupe, group",
    ),
    "enqueue-flow": ScriptDeclaration(
        keys=("job_prefix", "pending", "delayed", "marker", "sequence", "type_counts",
              "type_index_prefix", *_EVENTS, "lanes", "lane_prefix", "waiting_children",
              "children_prefix", *GROUP_KEYS),
        args=("now_ms", "max_memory_share"),
        more_args="12 per job: id, parent id, children, on_child_failure, type, priority, "
        "message, due ms, attempts, retention x2, group",
    ),
    "finish": ScriptDeclaration(
        keys=("job_prefix", "active", "delayed", "completed", "failed", "marker", "lane_prefix",
              "type_counts", "lanes", "expiry", "type_index_prefix", "idempotency_prefix",
              "logs_prefix", "samples", "stats_minute", *_EVENTS, "dedupe_prefix", "sequence",
              *GROUP_KEYS, "pending", "cancelled", "cancel_channel", *_FLOW),
        args=("worker_id", "now_ms", "trim_limit", "stats_ttl_s", "samples_kept"),
        more_args="6 per job: id, outcome, payload, traceback, retry delay ms, start ms",
    ),
    "delete": ScriptDeclaration(
        keys=("job_prefix", "completed", "failed", "cancelled", "expiry", "type_index_prefix",
              "idempotency_prefix", "logs_prefix", "type_counts", "children_prefix",
              "child_results_prefix", "child_failures_prefix"),
        args=("job_id",),
    ),
    "flow-set": ScriptDeclaration(
        keys=("flow", "lanes", "lane_prefix", "pending", "type_limits", "marker"),
        args=("field", "value", "lane"),
    ),
    "group-set": ScriptDeclaration(
        keys=("sequence", "marker", *GROUP_KEYS, "groups_paused"),
        args=("group", "setting", "value"),
    ),
    "promote": ScriptDeclaration(
        keys=("job_prefix", "delayed", "pending", "lanes", "lane_prefix", "sequence",
              "type_counts", "marker", *_EVENTS, "flow", *GROUP_KEYS),
        args=("job_id", "now_ms"),
    ),
    "reprioritise": ScriptDeclaration(
        keys=("job_prefix", "pending", "lanes", "lane_prefix", "sequence", *GROUP_KEYS),
        args=("job_id", "priority"),
    ),
    "log": ScriptDeclaration(
        keys=("job", "logs", "events_prefix"), args=("line", "lines_kept", "job_id")
    ),
    "oldest-pending": ScriptDeclaration(
        keys=("pending", "job_prefix", "lanes", "lane_prefix", "groups_pending"),
        args=(),
        more_args="a score range per priority",
    ),
    "page": ScriptDeclaration(
        keys=("index",),
        args=("after_score", "after_member", "reverse", "min_score", "max_score", "count"),
    ),
    "progress": ScriptDeclaration(
        keys=("job_prefix", "active", *_EVENTS),
        args=("job_id", "worker_id", "percent", "message", "now_ms"),
    ),
    "release": ScriptDeclaration(
        keys=("active", "pending", "marker", "sequence", "type_counts", "job_prefix", *_EVENTS,
              "lanes", "lane_prefix", *GROUP_KEYS),
        args=("worker_id", "now_ms"),
        more_args="job ids",
    ),
    "renew": ScriptDeclaration(
        keys=("active", "job_prefix"),
        args=("worker_id", "deadline_ms", "starts"),
        more_args="3 per started job: id, attempt, start ms; then job ids",
    ),
    "retry": ScriptDeclaration(
        keys=("job_prefix", "failed", "cancelled", "pending", "marker", "sequence",
              "type_counts", "expiry", *_EVENTS, "lanes", "lane_prefix", *GROUP_KEYS,
              "waiting_children", "child_failures_prefix"),
        args=("job_id", "now_ms"),
    ),
    "schedule-claim": ScriptDeclaration(
        keys=("schedules", "schedule_prefix", "schedule_runs_prefix", "job_prefix", "pending",
              "delayed", "marker", "sequence", "type_counts", "type_index_prefix", *_EVENTS,
              "lanes", "lane_prefix"),
        args=("schedule_id", "expected_ms", "next_ms", "runs", "now_ms", "runs_kept", "job_id",
              "type", "priority", "message", "due_ms", "attempts", "keep_completed",
              "keep_failed"),
    ),
    "sweep": ScriptDeclaration(
        keys=("active", "pending", "delayed", "marker", "sequence", "type_counts", "job_prefix",
              "completed", "failed", "cancelled", "expiry", "type_index_prefix",
              "idempotency_prefix", "logs_prefix", "workers", *_EVENTS, "stats_minute", "lanes",
              "lane_prefix", *GROUP_KEYS, "cancel_channel", *_FLOW),
        args=("now_ms", "limit", "max_stalls", "worker_ttl_ms", "stats_ttl_s"),
    ),
}  # fmt: skip


def script_source(name: str) -> str:
    """The text Redis runs for script `name`: the helpers, then the script's file."""
    lib = (LUA_DIR / "_lib.lua").read_text()
    # By the whole name: `enqueue-*.lua` alone would match `enqueue-flow-19.lua` too.
    [path] = [p for p in LUA_DIR.glob(f"{name}-*.lua") if _name_of(p) == name]
    return lib + "\n" + path.read_text()


def _name_of(path: Path) -> str | None:
    match = _SCRIPT_FILE.match(path.name)
    return None if match is None else match["name"]


@dataclass(frozen=True)
class _Script:
    script: AsyncScript
    declaration: ScriptDeclaration
    # KEYS in order, with None where the call supplies the key (`declaration.keys` names it).
    fixed_keys: tuple[str | None, ...]
    supplied_keys: frozenset[str]


class Scripts:
    """Every queue script, registered on one Redis client for one queue's keys."""

    def __init__(self, redis: Redis, keys: QueueKeys) -> None:
        self._scripts: dict[str, _Script] = {}
        for path in sorted(LUA_DIR.glob("*.lua")):
            match = _SCRIPT_FILE.match(path.name)
            if match is None:
                continue
            name = match["name"]
            declaration = DECLARATIONS[name]
            if len(declaration.keys) != int(match["keys"]):
                raise ValueError(f"{path.name} is not declared with {match['keys']} keys")
            fixed = tuple(_queue_key(keys, key) for key in declaration.keys)
            script = redis.register_script(script_source(name))
            supplied = {k for k, v in zip(declaration.keys, fixed, strict=True) if v is None}
            self._scripts[name] = _Script(script, declaration, fixed, frozenset(supplied))

    def sha(self, name: str) -> str:
        """The SHA1 Redis knows script `name` by."""
        return str(self._scripts[name].script.sha)

    def call(
        self,
        name: str,
        args: Mapping[str, ScriptArg],
        more: Sequence[ScriptArg] = (),
        keys: Mapping[str, str] | None = None,
    ) -> tuple[list[str], list[ScriptArg]]:
        """KEYS and ARGV of one call of `name`, in its declared order: `args` by name, then
        `more` (where the script takes more), and the keys the call supplies by name."""
        entry = self._scripts[name]
        declared = entry.declaration
        if set(args) != set(declared.args) or (more and declared.more_args is None):
            raise ValueError(
                f"script {name} takes ARGV {', '.join(declared.args)}"
                f"{', then ' + declared.more_args if declared.more_args else ''}; got "
                f"{', '.join(args)}{' and more' if more else ''}"
            )
        given = keys or {}
        if set(given) != entry.supplied_keys:
            raise ValueError(
                f"script {name} takes the keys {sorted(entry.supplied_keys)} from its caller"
            )
        resolved = [
            fixed or given[key] for key, fixed in zip(declared.keys, entry.fixed_keys, strict=True)
        ]
        return resolved, [*(args[arg] for arg in declared.args), *more]

    async def run(
        self,
        name: str,
        args: Mapping[str, ScriptArg],
        more: Sequence[ScriptArg] = (),
        keys: Mapping[str, str] | None = None,
        client: Redis | None = None,
    ) -> Any:
        """Run script `name` once (loading it first if the server has lost it)."""
        key_list, arg_list = self.call(name, args, more, keys)
        return await self._scripts[name].script(keys=key_list, args=arg_list, client=client)

    def add_to(
        self,
        pipe: Pipeline,
        name: str,
        args: Mapping[str, ScriptArg],
        more: Sequence[ScriptArg] = (),
        keys: Mapping[str, str] | None = None,
    ) -> None:
        """Queue a call of script `name` on `pipe`; read its result back with `settle`.

        redis-py's own pipeline support asks SCRIPT EXISTS before every batch (a second round
        trip); instead the call is sent blind as EVALSHA and `settle` loads the script only if
        the server had lost its script cache (restart, failover).
        """
        key_list, arg_list = self.call(name, args, more, keys)
        pipe.evalsha(self.sha(name), len(key_list), *key_list, *arg_list)

    async def settle(
        self,
        result: Any,
        name: str,
        args: Mapping[str, ScriptArg],
        more: Sequence[ScriptArg] = (),
        keys: Mapping[str, str] | None = None,
    ) -> Any:
        """The result of a call queued with `add_to` (its pipeline run with
        raise_on_error=False): redone once if the server refused it for an unknown script (a
        refused call changed nothing, inside MULTI too), raised if it failed."""
        if isinstance(result, NoScriptError):
            return await self.run(name, args, more, keys)
        if isinstance(result, Exception):
            raise result
        return result


def _queue_key(keys: QueueKeys, name: str) -> str | None:
    """The queue's key called `name` (a QueueKeys property), or None for one the call gives."""
    if isinstance(getattr(type(keys), name, None), property):
        return str(getattr(keys, name))
    return None
