"""`jobqueue flow FILE.json`: post a flow (a tree of jobs, docs/queue.md "Flows") to the API."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from service.cli.client import call, client_parent, make_client, print_json, watch_job
from service.cli.common import EXIT_OK, EXIT_USAGE, CliError, out


def read_flow(source: str) -> Any:
    """The flow in file `source` (`-`: standard input) as JSON; a usage error saying what is
    wrong with it otherwise."""
    name = "standard input" if source == "-" else source
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read the flow file {name}: {exc.strerror}", EXIT_USAGE) from exc
    except UnicodeDecodeError as exc:
        raise CliError(f"the flow file {name} is not UTF-8 text: {exc.reason}", EXIT_USAGE) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"the flow file {name} is not valid JSON: {exc}", EXIT_USAGE) from exc


def cmd_flow(args: argparse.Namespace) -> int:
    """Enqueue a flow; print its job ids (or, with --watch, follow its root job to the end)."""
    body = read_flow(args.file)
    with make_client(args) as client:
        flow = call(client, "POST", "/flows", json=body)
        if args.watch:
            out.print(f"enqueued flow {flow['root']['id']} ({len(flow['ids'])} jobs)")
            return int(watch_job(client, flow["root"]["id"]))
    if args.json or not out.is_terminal:
        print_json(flow)
    else:
        out.print(f"enqueued flow {flow['root']['id']} ({len(flow['ids'])} jobs)", highlight=False)
        _print_tree(flow["root"])
    return EXIT_OK


def _print_tree(root: dict[str, Any]) -> None:
    stack = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        out.print(f"{'  ' * depth}{node['id']}  {node['type']}  {node['status']}", highlight=False)
        stack += [(child, depth + 1) for child in reversed(node["children"])]


def add_flow_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "flow", parents=[client_parent()], help="enqueue a flow: a job tree from a JSON file"
    )
    p.add_argument(
        "file",
        help='the tree as POST /flows takes it, `-` for stdin: {"type": ..., "data": ..., '
        '"options": ..., "on_child_failure": ..., "children": [...]}',
    )
    p.add_argument("--watch", action="store_true", help="follow the root job until it ends")
    p.set_defaults(func=cmd_flow)
