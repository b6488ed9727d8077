"""`jobqueue`: run the system (run, api, worker, metrics) and talk to its HTTP API (enqueue,
status, watch, cancel, retry, stats, workers).

Exit codes: 0 success; 1 the watched job ended failed or cancelled; 2 bad usage or
configuration; 3 the API refused the request (4xx); 4 the API or Redis is unreachable or failed
(5xx); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from service.settings import Settings, get_settings

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_UNAVAILABLE = 4
EXIT_INTERRUPTED = 130

DEFAULT_URL = "http://127.0.0.1:8000"
# Where `jobqueue run` keeps the key it generated, so restarts and client commands reuse it.
API_KEY_FILE = "api-key"
# Client requests: connecting fails fast; a slow server still gets time to answer.
CLIENT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
# `watch` reopens a job's event stream the server closed (its time limit) after this pause.
RECONNECT_SECONDS = 0.5

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class CliError(Exception):
    """A failure to report as one sentence with an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# --- server commands -----------------------------------------------------------------------------


def cmd_api(args: argparse.Namespace) -> int:
    """Serve the HTTP API with uvicorn (one process; scale with more tasks)."""
    import uvicorn  # lazy: only the server commands need it

    from service.api.app import MissingApiKeysError, create_app

    settings = get_settings()
    try:
        app = create_app(settings)
    except MissingApiKeysError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    # uvicorn re-raises the stop signal once its graceful shutdown is done, so the handler in
    # place before it decides the exit status. A requested stop is a success (exit 0), which is
    # what ECS and `jobqueue run` expect, not death by SIGTERM.
    signal.signal(signal.SIGTERM, lambda *_: None)
    host, port = args.host or settings.host, args.port or settings.port
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            proxy_headers=True,
            # The ALB is the only peer in the cloud; trusting X-Forwarded-* from it is the point.
            forwarded_allow_ips="*",
            timeout_graceful_shutdown=10,
        )
    except SystemExit as exc:
        # uvicorn logs why it could not start (its own line above) and exits 3, which is our
        # "refused" code; say it in one sentence with the configuration exit code instead.
        if exc.code not in (None, 0):
            raise CliError(
                f"the API could not listen on {host}:{port} (address in use or unknown host)",
                EXIT_USAGE,
            ) from exc
    return EXIT_OK


def cmd_worker(_: argparse.Namespace) -> int:
    """Run WORKER_COUNT worker processes until SIGTERM."""
    from service.worker import run_workers  # lazy: imports every job type

    return run_workers(get_settings())


def cmd_metrics(args: argparse.Namespace) -> int:
    """Publish queue metrics every period (or once)."""
    from service.metrics.task import run_metrics  # lazy: boto3 is slow to import

    return run_metrics(get_settings(), once=args.once, dry_run=args.dry_run)


def cmd_run(args: argparse.Namespace) -> int:
    """The local all-in-one: embedded Valkey if needed, API, workers and metrics loop."""
    settings = get_settings()
    return LocalStack(settings, args.host or settings.host, args.port or settings.port).run()


# --- `jobqueue run`: one supervisor, three child processes ---------------------------------------

# Locally, Ctrl-C should not wait the cloud's 90 s for running jobs: they are handed back to
# pending and run again on the next start, so nothing is lost by a short grace.
LOCAL_SHUTDOWN_GRACE_SECONDS = 10.0
# After SIGTERM a child gets its grace plus this long before it is killed.
STOP_MARGIN_SECONDS = 15.0
READY_TIMEOUT_SECONDS = 30.0


def ensure_api_key(settings: Settings) -> tuple[str, bool]:
    """A key for the local API: the configured one, else the stored one, else a new one.

    Returns (key, generated); a generated key is stored in DATA_DIR/api-key (mode 600) so a
    restart and the client commands reuse it.
    """
    configured = settings.api_key_values()
    if configured:
        return configured[0], False
    path = settings.data_dir / API_KEY_FILE
    if path.is_file() and path.read_text(encoding="utf-8").strip():
        return path.read_text(encoding="utf-8").strip(), True
    key = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(key + "\n", encoding="utf-8")
    return key, True


class LocalStack:
    """Supervises the local system: Valkey (embedded when no Redis is configured), the API,
    the workers and the metrics loop, each its own process; stops them all on Ctrl-C/SIGTERM."""

    def __init__(self, settings: Settings, host: str, port: int) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.env = dict(os.environ)
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.valkey: Any = None
        self.stop = threading.Event()

    def run(self) -> int:
        """Start everything, wait for a signal or a child's death, stop everything."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop.set())
        try:
            key, generated = self._prepare()
            self._start_children()
            self._wait_ready()
            self._banner(key, generated)
            return self._supervise()
        finally:
            self._stop_all()

    def _prepare(self) -> tuple[str, bool]:
        if not self.settings.redis_configured:
            from service.embedded import start_embedded_valkey

            self.valkey = start_embedded_valkey(self.settings.data_dir / "valkey", persist=True)
            self.env["REDIS_URL"] = self.valkey.connection_url
        key, generated = ensure_api_key(self.settings)
        if generated:
            self.env["API_KEYS"] = key
        self.env.setdefault("SHUTDOWN_GRACE_SECONDS", str(LOCAL_SHUTDOWN_GRACE_SECONDS))
        return key, generated

    def _start_children(self) -> None:
        me = [sys.executable, "-m", "service.cli"]
        for name, argv in (
            ("api", [*me, "api", "--host", self.host, "--port", str(self.port)]),
            ("worker", [*me, "worker"]),
            ("metrics", [*me, "metrics"]),
        ):
            # A session of its own: Ctrl-C reaches only this supervisor, which then stops the
            # children in order instead of all of them racing to exit.
            child = subprocess.Popen(argv, env=self.env, start_new_session=True)  # noqa: S603
            self.children.append((name, child))

    @property
    def base_url(self) -> str:
        """Where the local API answers (loopback when listening on every interface)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline and not self.stop.is_set():
            self._check_children()
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).is_success:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        if not self.stop.is_set():
            raise CliError(f"the API did not become ready at {self.base_url}", EXIT_UNAVAILABLE)

    def _banner(self, key: str, generated: bool) -> None:
        url = self.base_url
        out.print(f"[bold green]jobqueue is running[/]  API {url}  docs {url}/docs  UI {url}/ui")
        if generated:
            where = self.settings.data_dir / API_KEY_FILE
            out.print(f"API key: [bold]{key}[/]  (stored in {where})", highlight=False)
        else:
            out.print("API key: the one in API_KEYS / API_KEYS_FILE")
        redis = self.env.get("REDIS_URL") or "REDIS_HOST"
        out.print(f"Redis: {redis}   workers: {self.settings.worker_count}   Ctrl-C stops")

    def _check_children(self) -> None:
        for name, child in self.children:
            if child.poll() is not None:
                raise CliError(
                    f"the {name} process exited with {child.returncode}", EXIT_UNAVAILABLE
                )

    def _supervise(self) -> int:
        while not self.stop.wait(0.5):
            self._check_children()
        return EXIT_OK

    def _stop_all(self) -> None:
        grace = float(self.env["SHUTDOWN_GRACE_SECONDS"]) + STOP_MARGIN_SECONDS
        for _, child in self.children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + grace
        for _, child in self.children:
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        if self.valkey is not None:
            self.valkey.stop()


# --- client --------------------------------------------------------------------------------------


def stored_api_key(settings: Settings) -> str | None:
    """The key `jobqueue run` generated, if there is one."""
    path = settings.data_dir / API_KEY_FILE
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None


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
    try:
        data = json.loads(args.data) if args.data else {}
    except json.JSONDecodeError as exc:
        raise CliError(f"--data is not valid JSON: {exc}", EXIT_USAGE) from exc
    options = {
        "type": args.type,
        "data": data,
        "priority": args.priority,
        "delay_seconds": args.delay,
        "attempts": args.attempts,
        "idempotency_key": args.idempotency_key,
        "timeout_seconds": args.timeout,
    }
    return {k: v for k, v in options.items() if v is not None}


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
    table = Table("id", "host", "pid", "processed", "failed", "current jobs", "last heartbeat")
    for w in workers:
        table.add_row(
            w["id"], w["host"], str(w["pid"]), str(w["processed"]), str(w["failed"]),
            str(len(w["current_jobs"])), w["last_heartbeat"],
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
    return _report_end(job_id, final)


def _follow(client: httpx.Client, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Events of the job across reconnects, until its `end` event.

    The server closes a stream after SSE_MAX_SECONDS however long the job runs, and with an
    `error` event when its Redis goes away; a stream that delivered something is simply opened
    again. One that closes without a single event would only loop, so that ends the watch.
    """
    while True:
        received = False
        for event, data in _stream(client, job_id):
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


def _stream(client: httpx.Client, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        with client.stream("GET", job_path(job_id, "/events"), timeout=None) as response:
            if not response.is_success:
                response.read()
                raise CliError(_api_message(response), _exit_code_for(response.status_code))
            yield from sse_events(response.iter_lines())
    except httpx.TransportError as exc:
        raise CliError(f"lost the event stream of job {job_id}: {exc}", EXIT_UNAVAILABLE) from exc


def _report_end(job_id: str, final: dict[str, Any]) -> int:
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


def port_number(text: str) -> int:
    """A TCP port for `--port`; anything else is a usage error (exit 2), not a crash."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return port


def _server_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, func, text in (
        (
            "run",
            cmd_run,
            "run everything locally: Valkey (embedded if needed), API, workers, metrics",
        ),
        ("api", cmd_api, "serve the HTTP API"),
    ):
        parser = sub.add_parser(name, help=text, description=text)
        parser.add_argument("--host", help="listen address (default: HOST or 127.0.0.1)")
        parser.add_argument("--port", type=port_number, help="listen port (default: PORT or 8000)")
        parser.set_defaults(func=func)
    sub.add_parser("worker", help="run WORKER_COUNT worker processes").set_defaults(func=cmd_worker)
    metrics = sub.add_parser("metrics", help="publish queue metrics every period")
    metrics.add_argument("--once", action="store_true", help="publish one period and exit")
    metrics.add_argument("--dry-run", action="store_true", help="print instead of publishing")
    metrics.set_defaults(func=cmd_metrics)


def _client_parent() -> argparse.ArgumentParser:
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
    p.add_argument("--idempotency-key", help="a repeat with the same key returns the same job")
    p.add_argument("--watch", action="store_true", help="follow the job until it ends")
    p.set_defaults(func=cmd_enqueue)


def _client_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parent = _client_parent()
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


def build_parser() -> argparse.ArgumentParser:
    """The `jobqueue` argument parser."""
    parser = argparse.ArgumentParser(
        prog="jobqueue",
        description="A priority job queue on Redis/Valkey: run it, and talk to its API.",
        epilog="Exit codes: 0 ok, 1 job failed/cancelled, 2 usage, 3 refused, 4 unavailable.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    _server_parsers(sub)
    _client_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `jobqueue` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
