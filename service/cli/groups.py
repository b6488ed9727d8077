"""Fair-share group commands: `jobqueue groups list|pause|resume|limits` (see docs/queue.md
"Groups"). They call the API's `/groups` endpoints."""

from __future__ import annotations

import argparse
from urllib.parse import quote

from service.cli.client import call, client_parent, make_client, print_json
from service.cli.common import EXIT_OK, out
from service.cli.flow_control import limits_body, parse_rate
from service.cli.reading import positive_count, print_table, rate_text


def _path(group: str, verb: str) -> str:
    return f"/groups/{quote(group, safe='')}/{verb}"


def cmd_list(args: argparse.Namespace) -> int:
    """Print the groups, largest backlog first: pending, running, pause and limits."""
    with make_client(args) as client:
        page = call(client, "GET", "/groups", params={"limit": str(args.limit)})
    if args.json:
        print_json(page)
        return EXIT_OK
    rows = [
        [
            g["group"], str(g["pending"]), str(g["running"]), "yes" if g["paused"] else "no",
            rate_text(g["limits"]), str(g["limits"]["concurrency"] or ""),
        ]
        for g in page["items"]
    ]  # fmt: skip
    print_table(["group", "pending", "running", "paused", "rate", "concurrency"], rows, 0)
    if page["next_cursor"] is not None:
        more = page["total"] - len(rows)
        out.print(f"({more} more: raise --limit above {args.limit})", highlight=False)
    return EXIT_OK


def cmd_pause(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        print_json(call(client, "POST", _path(args.group, "pause")))
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        print_json(call(client, "POST", _path(args.group, "resume")))
    return EXIT_OK


def cmd_limits(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        print_json(call(client, "PUT", _path(args.group, "limits"), json=limits_body(args)))
    return EXIT_OK


def add_group_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `jobqueue groups ...` on the `jobqueue` subparsers."""
    parent = client_parent()
    groups = sub.add_parser("groups", help="fair-share groups: list, pause, resume, limits")
    commands = groups.add_subparsers(dest="groups_command", required=True, metavar="command")
    listing = commands.add_parser("list", parents=[parent], help="groups, largest backlog first")
    listing.add_argument("--limit", type=positive_count, default=100, help="groups to show")
    listing.set_defaults(func=cmd_list)
    for name, func, text in (
        ("pause", cmd_pause, "stop starting jobs of one group"),
        ("resume", cmd_resume, "start jobs of one group again"),
    ):
        p = commands.add_parser(name, parents=[parent], help=text)
        p.add_argument("group", help="group name")
        p.set_defaults(func=func)
    p = commands.add_parser("limits", parents=[parent], help="set a group's global limits")
    p.add_argument("group", help="group name")
    p.add_argument("--rate", type=parse_rate, help="at most N starts per SECONDS, e.g. 10/1")
    p.add_argument("--concurrency", type=int, help="at most N running at once")
    p.add_argument("--clear", action="store_true", help="remove both limits")
    p.set_defaults(func=cmd_limits)
