"""Container health checks for the roles that serve no HTTP: the worker and the metrics task.

Each process of a role records, every time it does its periodic work, that it is alive and how
it is doing, in a small JSON file of its own (`<role>-<pid>.json` under HEALTH_DIR). The record
says how long it stays valid (`fresh_for`), so the checker needs no settings of the role that
wrote it. ECS runs `python -m service.healthcheck ROLE` inside the container; it exits 0 when
every live process of the role has a fresh record that says healthy, 1 otherwise, and prints
one line saying why. Records of processes that no longer exist are ignored (and removed): the
process manager restarts a dead worker process under a new pid.

Why a file and not a Redis read: the check must tell whether *this container's* processes do
their work, and must not fail every container at once when Redis has a bad minute (ECS would
replace the whole fleet for a fault that replacing it cannot fix).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from service.processes import pid_alive

ROLES = ("worker", "metrics")
HEALTH_DIR_ENV = "HEALTH_DIR"


def health_dir() -> Path:
    """Where records live: HEALTH_DIR, else a folder in the system's temporary directory."""
    configured = os.environ.get(HEALTH_DIR_ENV)
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "jobqueue-health"


@dataclass(frozen=True)
class Record:
    """What one process said of itself."""

    role: str
    pid: int
    written_at: float
    fresh_for: float
    healthy: bool
    detail: str

    def stale(self, now: float) -> bool:
        """True once the record is older than the writer promised to renew it."""
        return now - self.written_at > self.fresh_for


def record(
    role: str,
    *,
    fresh_for: float,
    healthy: bool = True,
    detail: str = "",
    directory: Path | None = None,
) -> None:
    """Record that this process is alive; `healthy=False` with a `detail` fails the check.

    Written atomically (a temporary file renamed over the old one), so a check never reads half
    a record. Never raises: a full or read-only disk must not stop the work being recorded.
    """
    folder = directory or health_dir()
    body = {
        "role": role,
        "pid": os.getpid(),
        "written_at": time.time(),
        "fresh_for": fresh_for,
        "healthy": healthy,
        "detail": detail,
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{role}-{os.getpid()}.json"
        partial = target.with_suffix(".tmp")
        partial.write_text(json.dumps(body))
        partial.replace(target)
    except OSError:
        return


def _read(path: Path) -> Record | None:
    try:
        body = json.loads(path.read_text())
        return Record(
            role=str(body["role"]),
            pid=int(body["pid"]),
            written_at=float(body["written_at"]),
            fresh_for=float(body["fresh_for"]),
            healthy=bool(body["healthy"]),
            detail=str(body.get("detail", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def live_records(role: str, directory: Path | None = None) -> list[Record]:
    """The records of `role` whose writing process still exists; dead ones' files are removed."""
    folder = directory or health_dir()
    records = []
    for path in sorted(folder.glob(f"{role}-*.json")):
        found = _read(path)
        if found is None:
            continue
        if not pid_alive(found.pid):
            path.unlink(missing_ok=True)
            continue
        records.append(found)
    return records


def check(role: str, directory: Path | None = None, now: float | None = None) -> tuple[bool, str]:
    """(healthy, one line saying why) for every live process of `role`."""
    now = time.time() if now is None else now
    records = live_records(role, directory)
    if not records:
        return False, f"no live {role} process has recorded its health yet"
    for found in records:
        age = now - found.written_at
        if found.stale(now):
            return False, (
                f"{role} pid {found.pid} last recorded {age:.0f} s ago "
                f"(promised every {found.fresh_for:.0f} s): it is stuck"
            )
        if not found.healthy:
            return False, f"{role} pid {found.pid}: {found.detail or 'reports itself unhealthy'}"
    return True, f"{len(records)} {role} process(es) healthy"


def main(argv: list[str] | None = None) -> int:
    """`python -m service.healthcheck ROLE`: exit 0 healthy, 1 unhealthy, 2 bad usage."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in ROLES:
        print(f"usage: python -m service.healthcheck {{{'|'.join(ROLES)}}}", file=sys.stderr)
        return 2
    healthy, why = check(args[0])
    print(why)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
