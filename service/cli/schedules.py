"""Schedule commands: `jobqueue schedules list|show|add|rm|pause|resume|trigger` (see
docs/queue.md "Schedules"). They call the API's `/schedules` endpoints; the API checks every
field again, so the checks here are only those that need no server (exit 2, nothing sent)."""

from __future__ import annotations

import argparse
import contextlib
import json
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from service.cli.client import _json_option, call, client_parent, make_client, print_json
from service.cli.common import EXIT_OK, EXIT_USAGE, CliError, err, out
from service.cli.reading import print_table


def schedule_path(schedule_id: str, suffix: str = "") -> str:
    """`/schedules/{id}{suffix}` with the id escaped, so `a/b` stays one path segment."""
    return f"/schedules/{quote(schedule_id, safe='')}{suffix}"


# --- add: the PUT body from the options --------------------------------------------------------


def schedule_body(args: argparse.Namespace) -> dict[str, Any]:
    """The PUT body of `jobqueue schedules add`; CliError (exit 2) for input that cannot be
    right whatever the server says."""
    body: dict[str, Any] = {"type": args.type, "data": _data_object(args.data)}
    body |= _cadence(args)
    options = {"priority": args.priority, "attempts": args.attempts}
    body["options"] = {name: value for name, value in options.items() if value is not None}
    bounds = {
        "start_at": _aware_time("--start-at", args.start_at),
        "end_at": _aware_time("--end-at", args.end_at),
        "limit": args.limit,
        "misfire": args.misfire,
    }
    return body | {name: value for name, value in bounds.items() if value is not None}


def _data_object(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    data = _json_option("--data", text)
    if not isinstance(data, dict):
        raise CliError(
            f"--data must be a JSON object such as '{{\"sleep_seconds\": 1}}', "
            f"not {type(data).__name__} {text!r}",
            EXIT_USAGE,
        )
    return data


def _cadence(args: argparse.Namespace) -> dict[str, Any]:
    # Checked here rather than by an argparse group: argparse answers with its usage text, and
    # every other mistake of a client command is one sentence.
    if (args.cron is None) == (args.every is None):
        raise CliError("give exactly one of --cron EXPR and --every SECONDS", EXIT_USAGE)
    if args.every is not None:
        if args.timezone is not None:
            raise CliError("--timezone applies to --cron only, not to --every", EXIT_USAGE)
        return {"every_seconds": args.every}
    return {"cron": args.cron} | ({"timezone": args.timezone} if args.timezone else {})


def _aware_time(flag: str, text: str | None) -> str | None:
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        at = None
    # A time without an offset would be read in whatever zone the server runs in.
    if at is None or at.tzinfo is None:
        raise CliError(
            f"{flag} must be an ISO 8601 time with an offset, e.g. 2027-01-01T09:00:00+01:00, "
            f"not {text!r}",
            EXIT_USAGE,
        )
    return at.isoformat()


def _record_statuses(client: httpx.Client) -> list[int]:
    """The statuses of the client's responses from now on: `call` returns only the body, and
    only the status tells a created schedule (201) from a replaced one (200)."""
    statuses: list[int] = []
    client.event_hooks["response"].append(lambda response: statuses.append(response.status_code))
    return statuses


def cmd_add(args: argparse.Namespace) -> int:
    """Create or replace a schedule; the stored schedule on stdout, which of the two on stderr
    (so `| jq` still reads plain JSON)."""
    body = schedule_body(args)
    with make_client(args) as client:
        statuses = _record_statuses(client)
        schedule = call(client, "PUT", schedule_path(args.id), json=body)
    verb = "created" if statuses[-1] == HTTPStatus.CREATED else "replaced"
    err.print(f"{verb} schedule {args.id}", highlight=False, markup=False)
    print_json(schedule)
    return EXIT_OK


# --- list and show ------------------------------------------------------------------------------


def cadence_text(spec: dict[str, Any]) -> str:
    """`0 2 * * * (Europe/Berlin)` or `every 60s`."""
    if spec.get("every_seconds") is not None:
        return f"every {spec['every_seconds']}s"
    return f"{spec['cron']} ({spec['timezone']})"


def next_run_text(schedule: dict[str, Any]) -> str:
    """The next run in UTC (the column says so, which keeps the cell short), or why there is
    none."""
    if schedule["next_run_at"] is None:
        return "paused" if schedule["paused"] else "ended"
    at = datetime.fromisoformat(schedule["next_run_at"]).astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M:%S")


def cmd_list(args: argparse.Namespace) -> int:
    """Every schedule, soonest next run first: a table, or the API's JSON with --json."""
    with make_client(args) as client:
        schedules = call(client, "GET", "/schedules")
    if args.json:
        print_json(schedules)
        return EXIT_OK
    if not schedules:
        out.print("no schedules", highlight=False)
        return EXIT_OK
    rows = [
        [s["id"], s["spec"]["type"], cadence_text(s["spec"]), next_run_text(s),
         "yes" if s["paused"] else "no", str(s["runs"])]
        for s in schedules
    ]  # fmt: skip
    # The same borderless, terminal-wide table as `list` and `types`; the cadence gives way first.
    print_table(["id", "type", "cadence", "next run (UTC)", "paused", "runs"], rows, 2)
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    """One schedule as JSON, with its next run times and its newest runs."""
    with make_client(args) as client:
        print_json(call(client, "GET", schedule_path(args.id)))
    return EXIT_OK


# --- rm, pause, resume, trigger -----------------------------------------------------------------


def cmd_rm(args: argparse.Namespace) -> int:
    """Remove a schedule; the jobs it already enqueued stay."""
    # The 204 has no body for `call` to parse; a refusal still raises CliError.
    with make_client(args) as client, contextlib.suppress(json.JSONDecodeError):
        call(client, "DELETE", schedule_path(args.id))
    out.print(f"removed schedule {args.id}", highlight=False, markup=False)
    return EXIT_OK


def cmd_pause(args: argparse.Namespace) -> int:
    """Stop a schedule's cadence; print the schedule."""
    with make_client(args) as client:
        print_json(call(client, "POST", schedule_path(args.id, "/pause")))
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    """Restart a schedule's cadence from now; print the schedule."""
    with make_client(args) as client:
        print_json(call(client, "POST", schedule_path(args.id, "/resume")))
    return EXIT_OK


def cmd_trigger(args: argparse.Namespace) -> int:
    """Enqueue one run now; print the job's id alone, so `ID=$(... trigger X)` works."""
    with make_client(args) as client:
        run = call(client, "POST", schedule_path(args.id, "/trigger"))
    if args.json:
        print_json(run)
    else:
        out.print(run["job_id"], highlight=False, markup=False)
    return EXIT_OK


# --- argument parsing ---------------------------------------------------------------------------


def _add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    p = commands.add_parser("add", parents=[parent], help="create or replace a schedule")
    p.add_argument("id", help="schedule id (letters, digits, _ . : -)")
    p.add_argument("type", help="job type each run enqueues (see GET /jobs/types)")
    p.add_argument("--cron", help="cron expression, e.g. '0 2 * * *'")
    p.add_argument("--timezone", help="IANA timezone the cron runs in (default UTC)")
    p.add_argument("--every", type=int, help="run every SECONDS instead of a cron")
    p.add_argument("--data", help="payload as a JSON object, e.g. '{\"sleep_seconds\": 1}'")
    p.add_argument("--priority", choices=["low", "normal", "high", "critical"])
    p.add_argument("--attempts", type=int, help="runs allowed per job, counting the first")
    p.add_argument("--start-at", help="no run before this ISO 8601 time (with an offset)")
    p.add_argument("--end-at", help="no run after this ISO 8601 time (with an offset)")
    p.add_argument("--limit", type=int, help="end after this many runs")
    p.add_argument(
        "--misfire", choices=["skip", "run_once"], help="after downtime (default run_once)"
    )
    p.set_defaults(func=cmd_add)


def add_schedule_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `jobqueue schedules ...` on the `jobqueue` subparsers."""
    parent = client_parent()
    group = sub.add_parser("schedules", help="repeatable jobs: list, show, add, rm, ...")
    commands = group.add_subparsers(dest="schedules_command", required=True, metavar="command")
    listing = commands.add_parser("list", parents=[parent], help="every schedule, as a table")
    listing.set_defaults(func=cmd_list)
    _add_parser(commands, parent)
    for name, func, text in (
        ("show", cmd_show, "a schedule with its upcoming and last runs (JSON)"),
        ("rm", cmd_rm, "remove a schedule (its jobs stay)"),
        ("pause", cmd_pause, "stop a schedule's cadence"),
        ("resume", cmd_resume, "restart a schedule's cadence from now"),
        ("trigger", cmd_trigger, "enqueue one run now; prints its job id"),
    ):
        p = commands.add_parser(name, parents=[parent], help=text)
        p.add_argument("id", help="schedule id")
        p.set_defaults(func=func)
