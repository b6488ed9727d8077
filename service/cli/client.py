"""The client commands: talk to the HTTP API (enqueue, status, watch, cancel, retry, stats,
workers)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from service.cli.common import (
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CliError,
    err,
    out,
    stored_api_key,
)
from service.settings import get_settings

DEFAULT_URL = "http://127.0.0.1:8000"
# Client requests: connecting fails fast; a slow server still gets time to answer.
CLIENT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
# `watch` reopens a job's event stream the server closed (its time limit) after this pause.
RECONNECT_SECONDS = 0.5


def make_client(args: argparse.Namespace) -> httpx.Client:
    """An HTTP client for the API at --url with --api-key (or their environment variables)."""
    url = args.url or os.environ.get("JOBQUEUE_URL") or DEFAULT_URL
    if not url.startswith(("http://", "https://")):
        raise CliError(f"the API URL {url!r} must start with http:// or https://", EXIT_USAGE)
    key = args.api_key or os.environ.get("JOBQUEUE_API_KEY") or stored_api_key(get_settings())
    if not key:
        raise CliError(
            "no API key: pass --api-key or set JOBQUEUE_API_KEY (`jobqueue run` prints one)",
            EXIT_USAGE,
        )
    if not key.isascii():
        # HTTP headers carry ASCII; the server's keys are ASCII (token_urlsafe) too.
        raise CliError("the API key holds non-ASCII characters, so it cannot be sent", EXIT_USAGE)
    return httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=CLIENT_TIMEOUT)


def job_path(job_id: str, suffix: str = "") -> str:
    """`/jobs/{id}{suffix}` with the id escaped, so `a?b` or `../x` stay one path segment."""
    return f"/jobs/{quote(job_id, safe='')}{suffix}"


def call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    """One API call; CliError with the API's own message when it fails."""
    try:
        response = client.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        raise CliError(
            f"cannot reach the API at {client.base_url}: {exc}", EXIT_UNAVAILABLE
        ) from exc
    if response.is_success:
        return response.json()
    raise CliError(_api_message(response), _exit_code_for(response.status_code))


def _api_message(response: httpx.Response) -> str:
    try:
        message = str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = response.text[:200] or response.reason_phrase
    return f"{response.status_code}: {message}"


def _exit_code_for(status: int) -> int:
    return EXIT_REFUSED if status < 500 else EXIT_UNAVAILABLE


def print_json(value: Any) -> None:
    """Pretty JSON on a terminal, plain JSON in a pipe (so scripts can parse it)."""
    if out.is_terminal:
        out.print_json(data=value)
    else:
        sys.stdout.write(json.dumps(value) + "\n")


def enqueue_body(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON body of `jobqueue enqueue` from its options."""
    data = _json_option("--data", args.data) if args.data else {}
    options = {
        "type": args.type,
        "data": data,
        "priority": args.priority,
        "delay_seconds": args.delay,
        "attempts": args.attempts,
        "idempotency_key": args.idempotency_key,
        "group": args.group,
        "timeout_seconds": args.timeout,
        "backoff": _json_option("--backoff", args.backoff) if args.backoff else None,
    }
    return {k: v for k, v in options.items() if v is not None}


def _json_option(flag: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{flag} is not valid JSON: {exc}", EXIT_USAGE) from exc


def cmd_enqueue(args: argparse.Namespace) -> int:
    """Enqueue a job; print it (or, with --watch, follow it to the end)."""
    with make_client(args) as client:
        job = call(client, "POST", "/jobs/enqueue", json=enqueue_body(args))
        if args.watch:
            out.print(f"enqueued {job['id']}", highlight=False)
            return watch_job(client, job["id"])
    print_json(job)
    return EXIT_OK


def _simple(method: str, suffix: str) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        with make_client(args) as client:
            print_json(call(client, method, job_path(args.id, suffix)))
        return EXIT_OK

    return command


cmd_status = _simple("GET", "/status")
cmd_cancel = _simple("DELETE", "")
cmd_retry = _simple("POST", "/retry")


def cmd_stats(args: argparse.Namespace) -> int:
    """Print jobs per status and priority, throughput and latency."""
    with make_client(args) as client:
        stats = call(client, "GET", "/jobs/stats")
    if args.json:
        print_json(stats)
        return EXIT_OK
    table = Table(title="queue", show_header=False)
    for name, count in stats["counts"].items():
        table.add_row(name, str(count))
        if name == "processing":  # leased jobs whose code has not started yet
            table.add_row("reserved", str(stats.get("reserved", 0)))
    for name, count in stats["pending_by_priority"].items():
        table.add_row(f"pending {name}", str(count))
    for name, count in stats["throughput_last_minute"].items():
        table.add_row(f"{name} (last minute)", str(count))
    table.add_row("live workers", str(stats["live_workers"]))
    table.add_row("oldest pending (s)", f"{stats['oldest_pending_age_seconds']:.1f}")
    out.print(table)
    return EXIT_OK


def cmd_workers(args: argparse.Namespace) -> int:
    """Print the live workers."""
    with make_client(args) as client:
        workers = call(client, "GET", "/jobs/workers")["items"]
    if args.json:
        print_json(workers)
        return EXIT_OK
    table = Table("id", "host", "pid", "processed", "failed", "running", "reserved",
                  "last heartbeat")  # fmt: skip
    for w in workers:
        table.add_row(
            w["id"], w["host"], str(w["pid"]), str(w["processed"]), str(w["failed"]),
            str(w.get("running", len(w["current_jobs"]))), str(w.get("reserved", 0)),
            w["last_heartbeat"],
        )  # fmt: skip
    out.print(table if workers else "no live workers")
    return EXIT_OK


# --- watch (Server-Sent Events) -----------------------------------------------------------------


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs from an SSE line stream; comments (keep-alives) are skipped."""
    event, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


def watch_job(client: httpx.Client, job_id: str) -> int:
    """A live progress bar until the job ends; exit 0 if it completed, 1 otherwise."""
    final: dict[str, Any] = {}
    columns = (TextColumn("{task.fields[status]:<10}"), BarColumn(), TaskProgressColumn(),
               TimeElapsedColumn(), TextColumn("{task.description}"))  # fmt: skip
    with Progress(*columns, console=out, transient=False) as bar:
        task = bar.add_task("", total=100, status="…")
        for event, data in _follow(client, job_id):
            status = str(data.get("status") or "gone")
            bar.update(task, status=status, description=data.get("message") or "")
            if "progress" in data:
                bar.update(task, completed=float(data["progress"] or 0))
            if event == "end":
                final = data
                if status == "completed":
                    bar.update(task, completed=100)
    return report_end(job_id, final)


def _follow(
    client: httpx.Client, job_id: str, params: dict[str, str] | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Events of the job across reconnects, until its `end` event.

    The server closes a stream after SSE_MAX_SECONDS however long the job runs, and with an
    `error` event when its Redis goes away; a stream that delivered something is simply opened
    again. One that closes without a single event would only loop, so that ends the watch.
    """
    while True:
        received = False
        for event, data in _stream(client, job_id, params):
            if event == "error":
                raise CliError(
                    f"the event stream of job {job_id} failed: {data.get('message')}",
                    EXIT_UNAVAILABLE,
                )
            received = True
            yield event, data
            if event == "end":
                return
        if not received:
            return
        time.sleep(RECONNECT_SECONDS)


def follow_events(
    client: httpx.Client, job_id: str, params: dict[str, str] | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The job's SSE events (with `params` as the stream's query) across reconnects, until
    its `end` event."""
    return _follow(client, job_id, params)


def _stream(
    client: httpx.Client, job_id: str, params: dict[str, str] | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    path = job_path(job_id, "/events")
    try:
        with client.stream("GET", path, params=params, timeout=None) as response:
            if not response.is_success:
                response.read()
                raise CliError(_api_message(response), _exit_code_for(response.status_code))
            yield from sse_events(response.iter_lines())
    except httpx.TransportError as exc:
        raise CliError(f"lost the event stream of job {job_id}: {exc}", EXIT_UNAVAILABLE) from exc


def report_end(job_id: str, final: dict[str, Any]) -> int:
    status = final.get("status")
    if status == "completed":
        out.print(f"job {job_id} completed: {json.dumps(final.get('result'))}", highlight=False)
        return EXIT_OK
    if not final:
        raise CliError(
            f"the event stream of job {job_id} ended before the job did", EXIT_UNAVAILABLE
        )
    reason = final.get("error") or final.get("message") or ""
    err.print(f"job {job_id} ended {status}{': ' + reason if reason else ''}", highlight=False)
    return EXIT_JOB_FAILED


def cmd_watch(args: argparse.Namespace) -> int:
    """Follow a job with a live progress bar until it ends."""
    with make_client(args) as client:
        return watch_job(client, args.id)


# --- argument parsing ----------------------------------------------------------------------------


def client_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--url", help=f"API base URL (default: JOBQUEUE_URL or {DEFAULT_URL})")
    parent.add_argument("--api-key", help="API key (default: JOBQUEUE_API_KEY)")
    parent.add_argument("--json", action="store_true", help="print raw JSON")
    return parent


def _enqueue_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    p = sub.add_parser("enqueue", parents=[parent], help="enqueue a job")
    p.add_argument("type", help="job type (see GET /jobs/types)")
    p.add_argument("--data", help="payload as JSON, e.g. '{\"sleep_seconds\": 1}'")
    p.add_argument("--priority", choices=["low", "normal", "high", "critical"])
    p.add_argument("--delay", type=float, help="seconds before it may run")
    p.add_argument("--attempts", type=int, help="runs allowed, counting the first")
    p.add_argument("--timeout", type=float, help="seconds one run may take")
    p.add_argument(
        "--backoff",
        help='retry waits as JSON, e.g. \'{"type": "fixed", "delay_seconds": 600}\'',
    )
    p.add_argument("--idempotency-key", help="a repeat with the same key returns the same job")
    p.add_argument("--group", help="fair-share group (a tenant): groups take turns")
    p.add_argument("--watch", action="store_true", help="follow the job until it ends")
    p.set_defaults(func=cmd_enqueue)


def add_client_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parent = client_parent()
    _enqueue_parser(sub, parent)
    for name, func, text in (
        ("status", cmd_status, "print a job's status"),
        ("watch", cmd_watch, "follow a job with a live progress bar until it ends"),
        ("cancel", cmd_cancel, "cancel a pending, delayed or running job"),
        ("retry", cmd_retry, "run a failed or cancelled job again"),
    ):
        p = sub.add_parser(name, parents=[parent], help=text)
        p.add_argument("id", help="job id")
        p.set_defaults(func=func)
    sub.add_parser("stats", parents=[parent], help="queue statistics").set_defaults(func=cmd_stats)
    sub.add_parser("workers", parents=[parent], help="live workers").set_defaults(func=cmd_workers)
