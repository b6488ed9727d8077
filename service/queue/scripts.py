"""The queue's Lua scripts, loaded once per Redis client with `register_script`.

Each `lua/<name>-<key count>.lua` file changes several keys in one atomic step; its header names
every KEYS and ARGV entry. `_lib.lua` holds helpers prepended to each (Redis has no includes).
The key count in the file name is checked on every call, so a caller cannot silently pass the
keys of another version of a script.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

LUA_DIR = Path(__file__).parent / "lua"
_SCRIPT_FILE = re.compile(r"^(?P<name>[a-z-]+)-(?P<keys>\d+)\.lua$")

ScriptArg = str | int | float


@dataclass(frozen=True)
class _Script:
    script: AsyncScript
    key_count: int


class Scripts:
    """Every queue script, registered on one Redis client."""

    def __init__(self, redis: Redis) -> None:
        lib = (LUA_DIR / "_lib.lua").read_text()
        self._scripts: dict[str, _Script] = {}
        for path in sorted(LUA_DIR.glob("*.lua")):
            match = _SCRIPT_FILE.match(path.name)
            if match is None:
                continue
            body = lib + "\n" + path.read_text()
            self._scripts[match["name"]] = _Script(redis.register_script(body), int(match["keys"]))

    async def run(
        self,
        name: str,
        keys: Sequence[str],
        args: Sequence[ScriptArg],
        client: Redis | None = None,
    ) -> Any:
        """Run script `name` once (loading it first if the server has lost it)."""
        entry = self._check(name, keys)
        return await entry.script(keys=list(keys), args=list(args), client=client)

    def _check(self, name: str, keys: Sequence[str]) -> _Script:
        entry = self._scripts[name]
        if len(keys) != entry.key_count:
            raise ValueError(f"script {name} takes {entry.key_count} keys, got {len(keys)}")
        return entry

    def add_to(
        self, pipe: Pipeline, name: str, keys: Sequence[str], args: Sequence[ScriptArg]
    ) -> None:
        """Queue a call of script `name` on `pipe`; read its result back with `settle`.

        redis-py's own pipeline support asks SCRIPT EXISTS before every batch (a second round
        trip); instead the call is sent blind as EVALSHA and `settle` loads the script only if
        the server had lost its script cache (restart, failover).
        """
        entry = self._check(name, keys)
        pipe.evalsha(entry.script.sha, len(keys), *keys, *args)

    async def settle(
        self, result: Any, name: str, keys: Sequence[str], args: Sequence[ScriptArg]
    ) -> Any:
        """The result of a call queued with `add_to` (its pipeline run with
        raise_on_error=False): redone once if the server refused it for an unknown script (a
        refused call changed nothing, inside MULTI too), raised if it failed."""
        if isinstance(result, NoScriptError):
            return await self.run(name, keys, args)
        if isinstance(result, Exception):
            raise result
        return result
