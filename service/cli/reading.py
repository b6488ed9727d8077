"""The reading commands: `list` (search jobs), `types`, `logs` (with --follow), and
`completion` (a shell completion script generated from the parser itself).

Each prints a table sized to the terminal by default and the API's JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from collections.abc import Iterator
from typing import Any

import httpx
from rich.cells import cell_len
from rich.table import Table

from service.cli.client import (
    call,
    client_parent,
    follow_events,
    job_path,
    make_client,
    print_json,
    report_end,
)
from service.cli.common import EXIT_JOB_FAILED, EXIT_OK, out
from service.queue.states import JobState

PRIORITIES = ("low", "normal", "high", "critical")
# GET /jobs answers at most this many jobs per page; `list --limit` beyond it follows the cursor.
MAX_PAGE = 500
# `list --limit` is capped so a typo cannot walk the whole queue (use the API's cursor for that).
MAX_LIST = 100_000


# --- tables --------------------------------------------------------------------------------------


# Spaces between two columns (rich's default padding of one on each side, none at the edges).
COLUMN_GAP = 2
# A free-text column (an error, a description) keeps this many characters before others shrink.
FLEXIBLE_FLOOR = 12


def fit_widths(natural: list[int], width: int, flexible: int | None = None) -> list[int]:
    """Column widths that fit `width`. The `flexible` column (free text) gives way first, down
    to FLEXIBLE_FLOOR; then the widest column gives up a character at a time, so short columns
    (status, priority) stay whole while long ones (ids, names) are cut."""
    widths = list(natural)
    excess = sum(widths) + COLUMN_GAP * (len(widths) - 1) - width
    if flexible is not None and excess > 0:
        cut = min(excess, max(0, widths[flexible] - FLEXIBLE_FLOOR))
        widths[flexible] -= cut
        excess -= cut
    while excess > 0 and max(widths) > 1:
        widths[widths.index(max(widths))] -= 1
        excess -= 1
    return widths


def print_table(headers: list[str], rows: list[list[str]], flexible: int | None = None) -> None:
    """A table no wider than the terminal (COLUMNS when set): cells too long for their column
    end in an ellipsis, and none wraps onto a second line; `flexible` as for fit_widths."""
    natural = [
        max(cell_len(cell) for cell in column) for column in zip(headers, *rows, strict=True)
    ]
    widths = fit_widths(natural, shutil.get_terminal_size().columns, flexible)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for header, width in zip(headers, widths, strict=True):
        table.add_column(header, width=width, no_wrap=True, overflow="ellipsis")
    for row in rows:
        table.add_row(*row)
    out.print(table, crop=False, soft_wrap=False, markup=False)


def short_time(value: str | None) -> str:
    """`2026-12-04T01:31:18.52Z` as `2026-12-04 01:31:18`; empty for none."""
    return value[:19].replace("T", " ") if value else ""


# --- list ----------------------------------------------------------------------------------------


def search_params(args: argparse.Namespace) -> dict[str, str]:
    """The query parameters of `GET /jobs` from `list`'s options (unset ones left out)."""
    given = {
        "state": args.state, "type": args.type, "priority": args.priority,
        "since": args.since, "until": args.until, "q": args.q,
    }  # fmt: skip
    return {name: value for name, value in given.items() if value is not None}


def search_jobs(
    client: httpx.Client, params: dict[str, str], limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Up to `limit` matching jobs, newest first, following `next_cursor`; and the cursor to
    go on from (None when nothing more matches)."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while len(items) < limit:
        page_params = {**params, "limit": str(min(MAX_PAGE, limit - len(items)))}
        if cursor:
            page_params["cursor"] = cursor
        page = call(client, "GET", "/jobs", params=page_params)
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    return items[:limit], cursor


def cmd_list(args: argparse.Namespace) -> int:
    """Print the jobs a search matches."""
    with make_client(args) as client:
        items, cursor = search_jobs(client, search_params(args), args.limit)
    if args.json:
        print_json({"items": items, "next_cursor": cursor})
        return EXIT_OK
    if not items:
        out.print("no matching jobs")
        return EXIT_OK
    rows = [
        [job["id"], job["type"], job["status"] + (" (reserved)" if job.get("reserved") else ""),
         job["priority"],
         f"{job['attempts_made']}/{job['max_attempts']}", short_time(job["created_at"]),
         job["error"] or ""]
        for job in items
    ]  # fmt: skip
    print_table(["id", "type", "status", "priority", "tries", "created", "error"], rows, 6)
    if cursor:
        out.print(f"(more match: raise --limit above {args.limit})", highlight=False)
    return EXIT_OK


# --- types ---------------------------------------------------------------------------------------


def rate_text(limits: dict[str, Any]) -> str:
    """A rate limit as `N/Ss` (empty without one)."""
    rate = limits.get("rate")
    return f"{rate['limit']}/{rate['per_seconds']:g}s" if rate else ""


def cmd_types(args: argparse.Namespace) -> int:
    """Print the registered job types with their defaults, pause state and limits."""
    with make_client(args) as client:
        types = call(client, "GET", "/jobs/types")
    if args.json:
        print_json(types)
        return EXIT_OK
    rows = []
    for t in types["items"]:
        defaults, limits = t["defaults"], t.get("limits") or {}
        timeout = defaults["timeout_seconds"]
        concurrency = limits.get("concurrency") or defaults["concurrency"]
        rows.append([
            t["name"], defaults["priority"], str(defaults["attempts"]),
            f"{timeout:g}s" if timeout is not None else "", "yes" if t["paused"] else "no",
            rate_text(limits), str(concurrency or ""), t["description"].split("\n")[0],
        ])  # fmt: skip
    headers = ["name", "priority", "attempts", "timeout", "paused", "rate", "concurrency"]
    print_table([*headers, "description"], rows, len(headers))
    return EXIT_OK


# --- logs ----------------------------------------------------------------------------------------


def _print_line(line: str, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"event": "log", "line": line}) + "\n")
        sys.stdout.flush()
    else:
        out.print(line, markup=False, highlight=False)


def _final_detail(client: httpx.Client, job_id: str, end: dict[str, Any]) -> dict[str, Any]:
    """The ended job's detail without its logs (what `--json` reports), or the stream's `end`
    event when the job is gone already (retention may delete it as it ends)."""
    response = client.get(job_path(job_id))
    if not response.is_success:
        return end
    return {k: v for k, v in response.json().items() if k != "logs"}


def follow_logs(client: httpx.Client, job_id: str, as_json: bool) -> int:
    """Print the job's kept log lines, then each new one, until the job ends; exit as `watch`
    does.

    One event stream (`?logs=true`) carries both: the server subscribes before it reads the
    kept lines and sends the last lines before `end`, numbering each line, so a line is
    printed once even when a reconnect sends the kept lines again."""
    printed = 0  # the number of the last line printed
    final: dict[str, Any] = {}
    for event, data in follow_events(client, job_id, {"logs": "true"}):
        if event == "log" and int(data["index"]) > printed:
            printed = int(data["index"])
            _print_line(str(data["line"]), as_json)
        elif event == "end":
            final = data
    final = _final_detail(client, job_id, final)
    if as_json:
        sys.stdout.write(json.dumps({"event": "end", "job": final}) + "\n")
        return EXIT_OK if final.get("status") == JobState.COMPLETED else EXIT_JOB_FAILED
    return report_end(job_id, final)


def cmd_logs(args: argparse.Namespace) -> int:
    """Print a job's newest log lines (with --follow, and then new ones until it ends)."""
    with make_client(args) as client:
        if args.follow:
            return follow_logs(client, args.id, args.json)
        job = call(client, "GET", job_path(args.id))
    if args.json:
        print_json({"id": job["id"], "status": job["status"], "logs": job["logs"]})
        return EXIT_OK
    for line in job["logs"]:
        out.print(line, markup=False, highlight=False)
    return EXIT_OK


# --- completion ----------------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> tuple[list[str], dict[str, list[str]]]:
    """What a parser offers (its options, and the choices of a positional such as `bash|zsh`),
    and the values of each option that takes one of a few choices."""
    offered: list[str] = []
    choices: dict[str, list[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue  # its commands are offered by name
        values = [str(c) for c in action.choices] if action.choices is not None else []
        offered += action.option_strings or values
        for flag in action.option_strings if values else ():
            choices[flag] = values
    return offered, choices


def command_words(
    parser: argparse.ArgumentParser, path: str = ""
) -> Iterator[tuple[str, list[str], dict[str, list[str]]]]:
    """(command path, words to offer after it, option choices) for the parser and every
    command under it, depth first: ("", [...top-level...]), ("schedules", ...), ..."""
    subs = _subcommands(parser)
    flags, choices = _options(parser)
    yield path, [*subs, *flags], choices
    for name, child in subs.items():
        yield from command_words(child, f"{path} {name}".strip())


def _cases(parser: argparse.ArgumentParser, close: str) -> tuple[str, str, str]:
    """Shell `case` arms: known command paths, words per path, choices per `path option`."""
    known, words, values = [], [], []
    for path, offered, choices in command_words(parser):
        if path:
            known.append(shlex.quote(path))
        words.append(f"    {shlex.quote(path)}) opts={shlex.quote(' '.join(offered))} {close}")
        for flag, options in choices.items():
            key = shlex.quote(f"{path} {flag}".strip())
            values.append(f"    {key}) opts={shlex.quote(' '.join(options))} {close}")
    return "|".join(known), "\n".join(words), "\n".join(values)


BASH = """\
# bash completion for jobqueue: eval "$(jobqueue completion bash)"
_jobqueue() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
  local cmd="" next opts="" i
  for ((i = 1; i < COMP_CWORD; i++)); do
    next="${{cmd:+$cmd }}${{COMP_WORDS[i]}}"
    case "$next" in
    {known}) cmd="$next" ;;
    esac
  done
  case "${{cmd:+$cmd }}$prev" in
{values}
  esac
  if [[ -z "$opts" ]]; then
    case "$cmd" in
{words}
    esac
  fi
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}}
complete -F _jobqueue jobqueue
"""

ZSH = """\
#compdef jobqueue
# zsh completion for jobqueue: eval "$(jobqueue completion zsh)", or save as _jobqueue on fpath
_jobqueue() {{
  local cmd="" next opts="" i
  for ((i = 2; i < CURRENT; i++)); do
    next="${{cmd:+$cmd }}${{words[i]}}"
    case "$next" in
    ({known}) cmd="$next" ;;
    esac
  done
  case "${{cmd:+$cmd }}${{words[CURRENT-1]}}" in
{values}
  esac
  if [[ -z "$opts" ]]; then
    case "$cmd" in
{words}
    esac
  fi
  compadd -- ${{=opts}}
}}
compdef _jobqueue jobqueue
"""


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The bash or zsh completion script for every command and option of `parser`."""
    known, words, values = _cases(parser, ";;")
    template = BASH if shell == "bash" else ZSH
    return template.format(known=known, words=words, values=values)


def cmd_completion(args: argparse.Namespace) -> int:
    """Print the completion script for the shell."""
    from service.cli import build_parser  # the whole parser, this command's own included

    sys.stdout.write(completion_script(build_parser(), args.shell))
    return EXIT_OK


# --- argument parsing ----------------------------------------------------------------------------


def positive_count(text: str) -> int:
    """`--limit`: a whole number from 1 to MAX_LIST; anything else is a usage error (exit 2)."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIST:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count from 1 to {MAX_LIST}")
    return int(text)


def moment(text: str) -> str:
    """`--since`/`--until`: checked here (exit 2) as the API will read it, then sent as given."""
    from service.queue.search import parse_time

    try:
        parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time ({exc}); give ISO-8601 with a zone or epoch milliseconds"
        ) from exc
    return text


def _list_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    p = sub.add_parser("list", parents=[parent], help="search jobs (newest first)")
    p.add_argument("--state", choices=[s.value for s in JobState], help="only jobs in this state")
    p.add_argument("--type", help="only jobs of this type")
    p.add_argument("--priority", choices=PRIORITIES, help="only jobs of this priority")
    p.add_argument("--since", type=moment, help="created at or after (ISO-8601 or epoch ms)")
    p.add_argument("--until", type=moment, help="created at or before (ISO-8601 or epoch ms)")
    p.add_argument("--q", help="a job id, an idempotency key, or text in data or error")
    p.add_argument("--limit", type=positive_count, default=50, help="jobs to show (default 50)")
    p.set_defaults(func=cmd_list)


def add_reading_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register list, types, logs and completion."""
    parent = client_parent()
    _list_parser(sub, parent)
    types = sub.add_parser("types", parents=[parent], help="job types: defaults, pause, limits")
    types.set_defaults(func=cmd_types)
    logs = sub.add_parser("logs", parents=[parent], help="a job's log lines (newest 50)")
    logs.add_argument("id", help="job id")
    logs.add_argument("--follow", "-f", action="store_true", help="print new lines until it ends")
    logs.set_defaults(func=cmd_logs)
    completion = sub.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=["bash", "zsh"])
    completion.set_defaults(func=cmd_completion)
