"""Flow-control commands: `jobqueue pause|resume [--type T]` and
`jobqueue limits TYPE [--rate N/SECONDS] [--concurrency N] [--clear]` (see docs/queue.md
"Flow control"). They call the API's flow-control endpoints."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from service.cli.client import call, client_parent, make_client, print_json
from service.cli.common import EXIT_OK, EXIT_USAGE, CliError


def _pause_path(args: argparse.Namespace, verb: str) -> str:
    if args.type is None:
        return f"/queue/{verb}"
    return f"/jobs/types/{quote(args.type, safe='')}/{verb}"


def cmd_pause(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        print_json(call(client, "POST", _pause_path(args, "pause")))
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        print_json(call(client, "POST", _pause_path(args, "resume")))
    return EXIT_OK


def parse_rate(text: str) -> dict[str, float]:
    """`10/1` -> {"limit": 10, "per_seconds": 1}."""
    limit, sep, seconds = text.partition("/")
    bad = argparse.ArgumentTypeError(f"--rate must be N/SECONDS, e.g. 10/1, not {text!r}")
    if not sep:
        raise bad
    try:
        return {"limit": int(limit), "per_seconds": float(seconds)}
    except ValueError:
        raise bad from None


def limits_body(args: argparse.Namespace) -> dict[str, Any]:
    """The PUT body: --clear removes both limits; otherwise only the limits given change."""
    if args.clear:
        if args.rate is not None or args.concurrency is not None:
            raise CliError("--clear takes no --rate or --concurrency", EXIT_USAGE)
        return {"rate": None, "concurrency": None}
    body: dict[str, Any] = {}
    if args.rate is not None:
        body["rate"] = args.rate
    if args.concurrency is not None:
        body["concurrency"] = args.concurrency
    return body


def cmd_limits(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        path = f"/jobs/types/{quote(args.type, safe='')}/limits"
        print_json(call(client, "PUT", path, json=limits_body(args)))
    return EXIT_OK


def add_flow_control_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parent = client_parent()
    for name, func, text in (
        ("pause", cmd_pause, "stop starting jobs (of the queue, or of one --type)"),
        ("resume", cmd_resume, "start jobs again (of the queue, or of one --type)"),
    ):
        p = sub.add_parser(name, parents=[parent], help=text)
        p.add_argument("--type", help="one job type instead of the whole queue")
        p.set_defaults(func=func)
    p = sub.add_parser("limits", parents=[parent], help="set a job type's global limits")
    p.add_argument("type", help="job type")
    p.add_argument("--rate", type=parse_rate, help="at most N starts per SECONDS, e.g. 10/1")
    p.add_argument("--concurrency", type=int, help="at most N running at once")
    p.add_argument("--clear", action="store_true", help="remove both limits")
    p.set_defaults(func=cmd_limits)
