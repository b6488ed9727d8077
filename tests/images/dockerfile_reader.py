"""A small Dockerfile reader: enough to check what the images copy, run and run as.

No Docker engine runs in CI, so the tests read images/Dockerfile the way BuildKit would
(line continuations, stages, the instructions of each stage) and check it against the repository.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "images" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ROLES = ("api", "worker", "metrics")


@dataclass
class Instruction:
    """One instruction: keyword (upper case) and its raw arguments."""

    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """The JSON (exec) form of CMD/ENTRYPOINT/HEALTHCHECK CMD arguments."""
        text = self.args.split("CMD", 1)[1].strip() if self.keyword == "HEALTHCHECK" else self.args
        value = json.loads(text)
        assert isinstance(value, list), f"{self.keyword} must use the exec (JSON) form"
        return [str(v) for v in value]

    def flags(self) -> dict[str, str]:
        """`--name=value` flags (COPY --from, RUN --mount keep their last value per name)."""
        return dict(re.findall(r"--([a-z-]+)=(\S+)", self.args))


@dataclass
class Stage:
    """A build stage: its base, its name and its instructions."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        """Instructions of one keyword, in order."""
        return [i for i in self.instructions if i.keyword == keyword]


def _logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    return lines


def parse_dockerfile(path: Path = DOCKERFILE) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages of a Dockerfile."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text()):
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, args.strip()))
        elif keyword == "ARG":
            key, _, default = args.partition("=")
            global_args[key.strip()] = default.strip()
    return global_args, stages


def stage_chain(stages: list[Stage], name: str) -> list[Stage]:
    """A stage and the stages it builds FROM, nearest first."""
    by_name = {s.name: s for s in stages if s.name}
    chain = [by_name[name]]
    while chain[-1].base in by_name:
        chain.append(by_name[chain[-1].base])
    return chain


def copy_sources(instruction: Instruction) -> list[str]:
    """The context paths a COPY/ADD reads (none when it copies from another stage)."""
    if "from" in instruction.flags():
        return []
    words = [w for w in shlex.split(instruction.args) if not w.startswith("--")]
    return words[:-1]


def bind_mount_sources(instruction: Instruction) -> list[str]:
    """The context paths a RUN bind-mounts."""
    sources = []
    for mount in re.findall(r"--mount=(\S+)", instruction.args):
        opts = dict(opt.partition("=")[::2] for opt in mount.split(","))
        if opts.get("type") == "bind" and "from" not in opts:
            sources.append(opts["source"])
    return sources


def dockerignored(relative: str, patterns: list[str] | None = None) -> bool:
    """Whether .dockerignore drops a context path (last matching pattern wins, `!` re-includes)."""
    if patterns is None:
        patterns = [
            line.strip()
            for line in DOCKERIGNORE.read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern[1:] if negate else pattern
        glob = glob.rstrip("/")
        candidates = [glob, glob.replace("**/", "")]
        if any(fnmatch.fnmatch(relative, c) or relative.startswith(c + "/") for c in candidates):
            ignored = not negate
    return ignored
