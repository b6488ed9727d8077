"""Running the real `jobqueue` console script as a user would, for the CLI tests."""

from __future__ import annotations

import os
import subprocess

from api_harness import API_KEY, BIN, ROOT

JOBQUEUE = str(BIN / "jobqueue")


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`jobqueue ARGS` with none of the caller's JOBQUEUE_* settings and no stored key."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("JOBQUEUE_")}
    return subprocess.run(
        [JOBQUEUE, *args],
        env={**base, "DATA_DIR": "/nonexistent-jobqueue-test", **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def client_env(server: str) -> dict[str, str]:
    """The settings that point the CLI at `server` with the test key."""
    return {"JOBQUEUE_URL": server, "JOBQUEUE_API_KEY": API_KEY}


def run_against(server: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`jobqueue ARGS` pointed at `server`, wide enough that rich never cuts a table cell."""
    return run_cli(*args, env={**client_env(server), "COLUMNS": "250"})
