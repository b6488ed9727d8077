"""`jobqueue run` as an operator meets it: Ctrl-C to the terminal's process group, kill -9, a
taken port. Real processes, real Redis, real signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from api_harness import API_KEY, BIN, ROOT, delete_queue_sync, free_port, unique_queue

from service.queue.keys import QueueKeys

pytestmark = pytest.mark.slow

JOBQUEUE = str(BIN / "jobqueue")
HANDED_BACK_WITHIN_SECONDS = 2.0
ORPHANS_GONE_WITHIN_SECONDS = 2.0


def run_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "REDIS_HOST", "API_KEYS", "API_KEYS_FILE")}  # fmt: skip
    return {**env, "DATA_DIR": str(tmp_path / ".jobqueue"), "WORKER_COUNT": "1", **extra}


def start_run(
    tmp_path: Path, env: dict[str, str], launcher: list[str] | None = None
) -> subprocess.Popen[str]:
    """`jobqueue run` (behind `launcher`) as a terminal starts it: the leader of its own
    process group."""
    return subprocess.Popen(
        [*(launcher or []), JOBQUEUE, "run"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def read_until_banner(process: subprocess.Popen[str]) -> list[str]:
    """Lines up to the last `export` line of the banner."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.strip().startswith("export JOBQUEUE_API_KEY="):
            return lines
    raise AssertionError("no banner:\n" + "\n".join(lines))


def exports(lines: list[str]) -> dict[str, str]:
    pairs = [ln.strip().removeprefix("export ").split("=", 1) for ln in lines]
    return {p[0]: p[1] for p in pairs if len(p) == 2 and ln_is_export(p[0])}


def ln_is_export(name: str) -> bool:
    return name.isupper() and name.replace("_", "").isalnum()


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for whoever reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def run_queue(redis_url: str) -> Iterator[str]:
    name = unique_queue()
    yield name
    delete_queue_sync(redis_url, name)


@pytest.mark.parametrize("launcher", ["jobqueue", "uv run"])
def test_ctrl_c_hands_running_jobs_back_at_once_and_stops_in_order(
    tmp_path: Path, redis_url: str, run_queue: str, launcher: str
) -> None:
    """Run directly, and as `make run` runs it (`uv run`, which passes the group's SIGINT on
    once more: before, that duplicate read as a second Ctrl-C and killed everything)."""
    port = free_port()
    env = run_env(tmp_path, REDIS_URL=redis_url, QUEUE_NAME=run_queue, KEY_PREFIX="jqtest",
                  API_KEYS=API_KEY, PORT=str(port), LEASE_SECONDS="60")  # fmt: skip
    uv = ["uv", "run", "--no-sync", "--project", str(ROOT)] if launcher == "uv run" else []
    process = start_run(tmp_path, env, uv)
    try:
        read_until_banner(process)
        base, headers = f"http://127.0.0.1:{port}", {"X-API-Key": API_KEY}
        ids = [httpx.post(f"{base}/jobs/enqueue", headers=headers,
                          json={"type": "noop", "data": {"sleep_seconds": 600}}).json()["id"]
               for _ in range(2)]  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
            httpx.get(f"{base}/jobs/{i}/status", headers=headers).json()["status"] != "processing"
            for i in ids
        ):
            time.sleep(0.2)
        # What a terminal's Ctrl-C does: SIGINT to every process of the foreground group.
        os.killpg(process.pid, signal.SIGINT)
        interrupted = time.monotonic()
        keys = QueueKeys(prefix="jqtest", queue=run_queue)
        client = redis.Redis.from_url(redis_url)
        try:
            while time.monotonic() - interrupted < HANDED_BACK_WITHIN_SECONDS and not all(
                client.zscore(keys.pending, i) is not None for i in ids
            ):
                time.sleep(0.05)
            assert all(client.zscore(keys.pending, i) is not None for i in ids)
        finally:
            client.close()
        output, _ = process.communicate(timeout=40)
        assert process.returncode == 0, output
        steps = [ln for ln in output.splitlines() if ln.startswith("jobqueue: ")]
        assert steps == [
            "jobqueue: stopping the workers: no new jobs, running ones go back to pending",
            "jobqueue: stopping the API and the metrics loop",
            "jobqueue: stopped",
        ], output
        assert "Traceback" not in output, output
        assert not (tmp_path / ".jobqueue" / "run.env").exists()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_kill_9_of_the_supervisor_leaves_no_child_alive(tmp_path: Path) -> None:
    # The embedded Valkey too: no REDIS_URL.
    process = start_run(tmp_path, run_env(tmp_path, PORT=str(free_port())))
    try:
        read_until_banner(process)
        tree = descendants(process.pid)
        assert len(tree) >= 5, tree  # Valkey, API, worker manager, a worker, metrics
        process.kill()
        process.wait()
        deadline = time.monotonic() + ORPHANS_GONE_WITHIN_SECONDS
        while time.monotonic() < deadline and any(running(pid) for pid in tree):
            time.sleep(0.05)
        assert not [pid for pid in tree if running(pid)]
    finally:
        for pid in descendants(process.pid) | {process.pid}:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        assert process.stdout is not None
        process.stdout.close()


def test_a_taken_port_exits_2_with_one_line_and_no_banner(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [JOBQUEUE, "run"], env=run_env(tmp_path, PORT=str(port)), cwd=tmp_path,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"jobqueue: port {port} on 127.0.0.1 is taken (Address already in use); "
        "pick another with --port N or PORT=N"
    ]
    assert not (tmp_path / ".jobqueue" / "valkey").exists()  # nothing was started
