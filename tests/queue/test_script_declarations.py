"""Every Lua script's header names its KEYS and ARGV in the order its declaration in
service/queue/scripts.py gives them, and every declared key is one the queue can build.

Calls are built from the declaration by name, so the header (what the script's body reads
by position) and the declaration must agree entry by entry: a key moved in either fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.queue.keys import QueueKeys
from service.queue.scripts import DECLARATIONS, LUA_DIR

# `KEYS[3]  delayed` / `ARGV[2] now_ms`: an entry of a header, named by its first word.
ENTRY = re.compile(r"\b(KEYS|ARGV)\[(\d+)(\.\.)?\]\s+([a-z_]*)")
# Keys a call supplies itself (they depend on the job or the minute), not QueueKeys properties.
PER_CALL_KEYS = {"job", "logs", "stats_minute", "index"}


def header(path: Path) -> str:
    text = path.read_text()
    assert text.startswith("--[["), f"{path.name} has no header comment"
    return text[: text.index("]]")]


def header_entries(path: Path) -> tuple[list[str], list[str], bool]:
    """The header's KEYS names and fixed ARGV names in order, and whether more ARGV follow."""
    found: dict[str, list[tuple[int, str]]] = {"KEYS": [], "ARGV": []}
    more = False
    for kind, index, open_ended, name in ENTRY.findall(header(path)):
        if open_ended:
            more = True
            continue
        found[kind].append((int(index), name))
    for kind, entries in found.items():
        numbers = [index for index, _ in entries]
        assert numbers == list(range(1, len(numbers) + 1)), f"{path.name}: {kind} {numbers}"
    more = more or "per job" in header(path)
    return [name for _, name in found["KEYS"]], [name for _, name in found["ARGV"]], more


def script_files() -> dict[str, Path]:
    return {
        path.name.rsplit("-", 1)[0]: path
        for path in sorted(LUA_DIR.glob("*-*.lua"))
        if not path.name.startswith("_")
    }


def test_every_script_file_is_declared_and_every_declaration_has_a_file() -> None:
    assert set(script_files()) == set(DECLARATIONS)


@pytest.mark.parametrize("name", sorted(DECLARATIONS))
def test_the_header_names_the_declared_keys_and_args_in_order(name: str) -> None:
    path = script_files()[name]
    keys, args, more = header_entries(path)
    declared = DECLARATIONS[name]
    assert keys == list(declared.keys), f"{path.name}: KEYS differ from the declaration"
    assert args == list(declared.args), f"{path.name}: ARGV differ from the declaration"
    assert more == (declared.more_args is not None), f"{path.name}: open-ended ARGV"
    assert path.name == f"{name}-{len(declared.keys)}.lua"


@pytest.mark.parametrize("name", sorted(DECLARATIONS))
def test_every_declared_key_is_one_the_queue_builds(name: str) -> None:
    for key in DECLARATIONS[name].keys:
        queue_key = isinstance(getattr(QueueKeys, key, None), property)
        assert queue_key != (key in PER_CALL_KEYS), f"{name}: key {key!r}"
