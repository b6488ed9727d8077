"""The `jobqueue` command as users run it: real processes, real HTTP, exit codes and messages."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import IO

import httpx
import pytest
from api_harness import (
    API_KEY,
    api_server,
    delete_queue_sync,
    free_port,
    service_env,
    stop_process,
    unique_queue,
    worker,
)

from service.cli import build_parser, ensure_api_key, sse_events
from service.settings import Settings
from tests.cli.cli_runner import JOBQUEUE, client_env, run_cli

# Every command the design names, with the arguments it cannot run without.
SPEC_COMMANDS = {
    "run": [], "api": [], "worker": [], "metrics": [], "enqueue": ["noop"], "status": ["j1"],
    "watch": ["j1"], "cancel": ["j1"], "retry": ["j1"], "stats": [], "workers": [],
    "pause": [], "resume": [], "limits": ["noop"], "schedules": ["list"], "list": [],
    "types": [], "logs": ["j1"], "completion": ["bash"], "artifacts": ["j1"],
    "groups": ["list"],
    "flow": ["flow.json"],
}  # fmt: skip


def test_every_spec_command_is_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps to the terminal; keep one line each
    help_text = build_parser().format_help()
    # Listed as a command of its own in the help (not just a word of some other line) ...
    listed = set(re.findall(r"^ {4}(\w+) {2,}\S", help_text, flags=re.MULTILINE))
    assert listed == set(SPEC_COMMANDS)
    # ... and parsed to its own handler.
    handlers = set()
    for command, needed in SPEC_COMMANDS.items():
        args = build_parser().parse_args([command, *needed])
        assert args.command == command
        handlers.add(args.func)
    assert len(handlers) == len(SPEC_COMMANDS)


def test_sse_parser_yields_events_and_skips_pings() -> None:
    lines = [": ping", "", "event: status", 'data: {"status": "pending"}', "",
             "event: end", 'data: {"status": "completed"}', ""]  # fmt: skip
    assert list(sse_events(iter(lines))) == [
        ("status", {"status": "pending"}),
        ("end", {"status": "completed"}),
    ]


def test_enqueue_status_cancel_retry_round_trip(server: str) -> None:
    env = client_env(server)
    enqueued = run_cli("enqueue", "noop", "--data", '{"sleep_seconds": 1}', "--priority",
                       "high", env=env)  # fmt: skip
    assert enqueued.returncode == 0, enqueued.stderr
    job = json.loads(enqueued.stdout)
    assert job["priority"] == "high"
    status = run_cli("status", job["id"], env=env)
    assert json.loads(status.stdout)["status"] == "pending"
    assert json.loads(run_cli("cancel", job["id"], env=env).stdout)["status"] == "cancelled"
    assert json.loads(run_cli("retry", job["id"], env=env).stdout)["status"] == "pending"


def test_flags_override_the_environment(server: str) -> None:
    wrong = {"JOBQUEUE_URL": "http://127.0.0.1:1", "JOBQUEUE_API_KEY": "x"}
    result = run_cli("stats", "--json", "--url", server, "--api-key", API_KEY, env=wrong)
    assert result.returncode == 0, result.stderr
    assert "counts" in json.loads(result.stdout)


def test_refused_requests_exit_3_with_one_sentence(server: str) -> None:
    env = client_env(server)
    job = json.loads(run_cli("enqueue", "noop", env=env).stdout)
    run_cli("cancel", job["id"], env=env)
    again = run_cli("cancel", job["id"], env=env)
    assert again.returncode == 3
    assert again.stderr.strip() == (
        f"jobqueue: 409: cannot cancel job '{job['id']}': it is cancelled"
    )
    unknown = run_cli("enqueue", "no-such-type", env=env)
    assert unknown.returncode == 3
    assert "known types" in unknown.stderr
    bad = run_cli("enqueue", "noop", "--data", "{oops", env=env)
    assert bad.returncode == 2
    assert bad.stderr.startswith("jobqueue: --data is not valid JSON")


def test_wrong_key_exits_3_and_no_key_exits_2(server: str) -> None:
    wrong = run_cli("stats", env={"JOBQUEUE_URL": server, "JOBQUEUE_API_KEY": "nope"})
    assert wrong.returncode == 3
    assert "401" in wrong.stderr
    missing = run_cli("stats", env={"JOBQUEUE_URL": server})
    assert missing.returncode == 2
    assert "no API key" in missing.stderr


def test_unreachable_api_exits_4() -> None:
    result = run_cli("stats", "--url", f"http://127.0.0.1:{free_port()}", "--api-key", "k")
    assert result.returncode == 4
    assert result.stderr.startswith("jobqueue: cannot reach the API")
    assert result.stderr.count("\n") == 1  # one line, no traceback


def test_workers_and_stats_print_tables(server: str) -> None:
    env = client_env(server)
    assert "pending" in run_cli("stats", env=env).stdout
    assert run_cli("workers", env=env).returncode == 0


@pytest.mark.slow
def test_watch_follows_a_job_to_completion(server: str, redis_url: str, cli_queue: str) -> None:
    env = client_env(server)
    with worker(redis_url, cli_queue):
        data = '{"sleep_seconds": 1, "progress_steps": 4}'
        result = run_cli("enqueue", "noop", "--data", data, "--watch", env=env)
    assert result.returncode == 0, result.stderr
    assert "100%" in result.stdout
    assert "completed" in result.stdout


def test_watch_of_a_cancelled_job_exits_1(server: str) -> None:
    env = client_env(server)
    job = json.loads(run_cli("enqueue", "noop", env=env).stdout)
    run_cli("cancel", job["id"], env=env)
    result = run_cli("watch", job["id"], env=env)
    assert result.returncode == 1
    assert "ended cancelled" in result.stderr


def test_api_refuses_to_start_without_keys(redis_url: str) -> None:
    env = {k: v for k, v in service_env(redis_url, "q").items() if k != "API_KEYS"}
    result = run_cli("api", "--port", str(free_port()), env=env)
    assert result.returncode == 2
    assert "no API key configured" in result.stderr


def test_generated_key_is_stored_private_and_reused(tmp_path: Path) -> None:
    settings = Settings(environment="local", data_dir=tmp_path)
    key, generated = ensure_api_key(settings)
    assert generated
    assert len(key) >= 32
    stored = tmp_path / "api-key"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert ensure_api_key(settings) == (key, True)
    configured = Settings(environment="local", data_dir=tmp_path, api_keys="mine-0123456789abcdef")
    assert ensure_api_key(configured) == ("mine-0123456789abcdef", False)


@pytest.mark.slow
def test_run_starts_everything_serves_jobs_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "REDIS_HOST", "API_KEYS", "API_KEYS_FILE")}  # fmt: skip
    env.update({"PORT": str(port), "DATA_DIR": str(tmp_path / ".jobqueue"), "WORKER_COUNT": "1"})
    process = subprocess.Popen(
        [JOBQUEUE, "run"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    try:
        # The banner comes once the API is ready; uvicorn's access log shares stdout.
        lines = [line for line in iter_lines(process.stdout, 60) if not line.startswith("INFO")]
        banner, key_line = lines[0], lines[1]
        assert "jobqueue is running" in banner
        assert f"http://127.0.0.1:{port}/ui" in banner
        key = (tmp_path / ".jobqueue" / "api-key").read_text().strip()
        assert key in key_line
        base = f"http://127.0.0.1:{port}"
        job = httpx.post(f"{base}/jobs/enqueue", json={"type": "noop"},
                         headers={"X-API-Key": key}).json()  # fmt: skip
        deadline = time.monotonic() + 30
        status = job["status"]
        while status != "completed" and time.monotonic() < deadline:
            time.sleep(0.2)
            status = httpx.get(f"{base}/jobs/{job['id']}/status",
                               headers={"X-API-Key": key}).json()["status"]  # fmt: skip
        assert status == "completed"
        assert (tmp_path / ".jobqueue" / "valkey").is_dir()  # embedded, persistent
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{base}/healthz", timeout=2)
    finally:
        stop_process(process)
        process.stdout.close()


def iter_lines(stream: IO[str], count: int) -> list[str]:
    """The first `count` lines, or fewer if the stream ends."""
    lines = []
    for _ in range(count):
        line = stream.readline()
        if not line:
            break
        lines.append(line)
        if "API key" in line:
            break
    return lines


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


@pytest.mark.parametrize("port", ["70000", "0", "http"])
def test_a_port_out_of_range_is_a_usage_error(redis_url: str, port: str) -> None:
    result = run_cli("api", "--port", port, env=service_env(redis_url, "q"), timeout=20)
    assert result.returncode == 2
    assert "is not a port number (1-65535)" in result.stderr


def test_a_port_in_use_exits_2_with_one_sentence(redis_url: str, server: str) -> None:
    taken = server.rsplit(":", 1)[1]
    result = run_cli("api", "--port", taken, env=service_env(redis_url, "q"), timeout=30)
    assert result.returncode == 2, result.stderr
    assert last_line(result.stderr) == (
        f"jobqueue: port {taken} on 127.0.0.1 is taken (Address already in use); "
        "pick another with --port N or PORT=N"
    )


def test_a_url_without_http_is_a_usage_error() -> None:
    result = run_cli("stats", "--url", "127.0.0.1:8000", "--api-key", "k")
    assert result.returncode == 2
    assert result.stderr == (
        "jobqueue: the API URL '127.0.0.1:8000' must start with http:// or https://\n"
    )


def test_a_key_that_cannot_be_sent_is_a_usage_error_not_a_traceback(server: str) -> None:
    result = run_cli("stats", "--url", server, "--api-key", "schl\u00fcssel")
    assert result.returncode == 2
    assert result.stderr == (
        "jobqueue: the API key holds non-ASCII characters, so it cannot be sent\n"
    )


def test_a_job_id_stays_one_path_segment(server: str) -> None:
    # Unescaped, `abc?x=1` would ask for job `abc` with a query string.
    result = run_cli("status", "abc?x=1", env=client_env(server))
    assert result.returncode == 3
    assert "no job with id 'abc'" not in result.stderr
    assert result.stderr.startswith("jobqueue: 422: invalid request: id:")


@pytest.mark.slow
def test_watch_reconnects_when_the_server_closes_the_stream(redis_url: str) -> None:
    # The server ends every stream after SSE_MAX_SECONDS (1 s here) however long the job runs;
    # watch must reopen it and still follow a 4 s job to its end.
    queue = unique_queue()
    try:
        with (
            api_server(redis_url, queue, SSE_MAX_SECONDS="1", SSE_PING_SECONDS="0.5") as base,
            worker(redis_url, queue),
        ):
            data = '{"sleep_seconds": 4, "progress_steps": 4}'
            result = run_cli("enqueue", "noop", "--data", data, "--watch", env=client_env(base))
    finally:
        delete_queue_sync(redis_url, queue)
    assert result.returncode == 0, result.stderr
    assert "completed" in result.stdout
    assert "100%" in result.stdout
