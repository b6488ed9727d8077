"""A worker process's start-up is mostly imports (docs/benchmarks.md, "Worker start-up"): the
modules only some jobs or commands need are imported when first used, not by `jobqueue worker`.

Checked in a fresh interpreter, the way `jobqueue worker` imports before its first job: the CLI
with its server commands only, then the broker module (which loads every built-in job type).
"""

from __future__ import annotations

import json
import subprocess
import sys

# Imported on first use only: the HTTP client (CLI client commands, the ECS agent) and Pillow
# (image jobs). Jinja2 is not among them: the email job's renderer processes fork from a server
# that must have it loaded already (service/jobs/email_sending.py).
LAZY = ("httpx", "PIL", "PIL.Image")

WORKER_IMPORTS = """
import json, sys
import service.cli
service.cli.build_parser(server_commands_only=True)
import service.worker
print(json.dumps(sorted(m for m in {lazy!r} if m in sys.modules)))
"""


def test_the_worker_command_imports_none_of_the_modules_only_some_jobs_need() -> None:
    code = WORKER_IMPORTS.format(lazy=LAZY)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(out.stdout.splitlines()[-1]) == []


def test_the_full_cli_still_has_every_command_and_the_client_helpers() -> None:
    # The server-only parser is a start-up shortcut, not a smaller CLI.
    import service.cli

    parser = service.cli.build_parser()
    choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"worker", "api", "run", "metrics", "enqueue", "status"} <= set(choices)
    assert callable(service.cli.sse_events)
