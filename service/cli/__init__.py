"""`jobqueue`: run the system (run, api, worker, metrics: `server.py`, with the local supervisor
in `supervisor.py`) and talk to its HTTP API (enqueue, status, watch, cancel, retry, stats,
workers: `client.py`; flow: `flows.py`; list, types, logs, completion: `reading.py`;
schedules: `schedules.py`; groups: `groups.py`).

Exit codes: 0 success; 1 the watched job ended failed or cancelled; 2 bad usage or
configuration (or, for `jobqueue run`, its port is taken); 3 the API refused the request (4xx);
4 the API or Redis is unreachable or failed (5xx); 5 `jobqueue worker` gave up on an unreachable
Redis (REDIS_CONNECT_ATTEMPTS); 130 interrupted (or a second Ctrl-C forced `jobqueue run` down).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import version

from pydantic import ValidationError

from service.cli.common import EXIT_INTERRUPTED, EXIT_USAGE, CliError, err
from service.cli.server import SERVER_COMMANDS, add_server_commands
from service.cli.supervisor import ensure_api_key

__all__ = ["build_parser", "ensure_api_key", "main", "sse_events"]


def __getattr__(name: str) -> object:
    if name == "sse_events":  # the client commands' module, imported only when asked for
        from service.cli.client import sse_events

        return sse_events
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_parser(server_commands_only: bool = False) -> argparse.ArgumentParser:
    """The `jobqueue` argument parser; `server_commands_only` leaves out the client commands,
    whose modules (httpx and the rest) a server process would import for nothing: a worker's
    start-up is mostly imports (docs/benchmarks.md)."""
    parser = argparse.ArgumentParser(
        prog="jobqueue",
        description="A priority job queue on Redis/Valkey: run it, and talk to its API.",
        epilog="Exit codes: 0 ok, 1 job failed/cancelled, 2 usage, 3 refused, 4 unavailable.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('jobqueue')}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    add_server_commands(sub)
    if server_commands_only:
        return parser
    from service.cli.artifacts import add_artifact_commands
    from service.cli.client import add_client_commands
    from service.cli.flow_control import add_flow_control_commands
    from service.cli.flows import add_flow_command
    from service.cli.groups import add_group_commands
    from service.cli.import_taskiq_redis import add_import_command
    from service.cli.reading import add_reading_commands
    from service.cli.schedules import add_schedule_commands

    add_client_commands(sub)
    add_flow_command(sub)
    add_artifact_commands(sub)
    add_reading_commands(sub)
    add_flow_control_commands(sub)
    add_schedule_commands(sub)
    add_group_commands(sub)
    add_import_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `jobqueue` console script; returns the exit status."""
    words = sys.argv[1:] if argv is None else list(argv)
    server_only = bool(words) and words[0] in SERVER_COMMANDS
    args = build_parser(server_commands_only=server_only).parse_args(words)
    try:
        return int(args.func(args))
    except CliError as exc:
        err.print(f"jobqueue: {exc.message}", highlight=False, markup=False)
        return exc.code
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]).upper()
        err.print(f"jobqueue: invalid setting {where}: {first['msg']}", highlight=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
