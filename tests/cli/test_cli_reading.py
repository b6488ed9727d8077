"""`jobqueue list`, `types`, `logs`, `completion` and `--version` as users run them: a real
API server (and, for logs, a real worker running the probe job type, which writes log lines)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_harness import API_KEY, ROOT, api_server, delete_queue_sync, unique_queue

from service.cli import build_parser
from service.cli.reading import fit_widths, search_jobs
from tests.cli.cli_runner import JOBQUEUE, run_cli
from tests.support.workers import PROBE, running_worker, worker_env


@pytest.fixture(scope="module")
def queue_name(redis_url: str) -> Iterator[str]:
    name = unique_queue()
    yield name
    delete_queue_sync(redis_url, name)


@pytest.fixture(scope="module")
def probe_server(redis_url: str, queue_name: str) -> Iterator[str]:
    """A real `jobqueue api` that also knows the probe job type (it logs `ran <pid>`)."""
    with api_server(redis_url, queue_name, PYTHONPATH=str(ROOT), **PROBE) as base:
        yield base


@pytest.fixture(scope="module")
def probe_worker(
    redis_url: str, queue_name: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with running_worker(worker_env(redis_url, queue_name, **PROBE), log):
        yield


@pytest.fixture
def env(probe_server: str) -> dict[str, str]:
    return {"JOBQUEUE_URL": probe_server, "JOBQUEUE_API_KEY": API_KEY}


@pytest.fixture
def api(probe_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=probe_server, headers={"X-API-Key": API_KEY}) as client:
        yield client


def enqueue(env: dict[str, str], job_type: str, *args: str) -> dict[str, Any]:
    result = run_cli("enqueue", job_type, *args, env=env)
    assert result.returncode == 0, result.stderr
    job: dict[str, Any] = json.loads(result.stdout)
    return job


def wait_for(api: httpx.Client, job_id: str, done: Any, timeout: float = 30) -> dict[str, Any]:
    """The job's detail once `done(detail)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = api.get(f"/jobs/{job_id}").json()
        if done(job):
            return job
        assert time.monotonic() < deadline, f"job {job_id} stayed {job['status']}"
        time.sleep(0.05)


def list_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    result = run_cli("list", "--json", *args, env=env)
    assert result.returncode == 0, result.stderr
    page: dict[str, Any] = json.loads(result.stdout)
    return page


# --- list ----------------------------------------------------------------------------------------


def test_list_filters_by_type_state_and_creation_time(env: dict[str, str]) -> None:
    later = ("--delay", "3600")  # delayed: no worker can change them under the test
    noop_a = enqueue(env, "noop", *later)
    since = noop_a["created_at"]
    noop_b = enqueue(env, "noop", *later)
    probe_a = enqueue(env, "probe", *later)
    probe_b = enqueue(env, "probe", *later, "--priority", "high")
    assert run_cli("cancel", noop_b["id"], env=env).returncode == 0

    def ids(*args: str) -> list[str]:
        return [job["id"] for job in list_json(env, "--since", since, *args)["items"]]

    newest_first = [probe_b["id"], probe_a["id"], noop_b["id"], noop_a["id"]]
    assert ids() == newest_first
    assert ids("--type", "probe") == [probe_b["id"], probe_a["id"]]
    assert ids("--type", "noop", "--state", "delayed") == [noop_a["id"]]
    assert ids("--state", "cancelled") == [noop_b["id"]]
    assert ids("--priority", "high") == [probe_b["id"]]
    assert ids("--q", probe_a["id"]) == [probe_a["id"]]
    assert ids("--until", since) == [noop_a["id"]]
    assert ids("--type", "no-such-type") == []


def test_list_limit_stops_early_and_hands_back_the_cursor(
    env: dict[str, str], api: httpx.Client
) -> None:
    first = enqueue(env, "noop", "--delay", "3600")
    for _ in range(4):
        enqueue(env, "noop", "--delay", "3600")
    since = first["created_at"]
    page = list_json(env, "--since", since, "--limit", "3")
    from_api = api.get("/jobs", params={"since": since, "limit": 3}).json()
    assert page == from_api  # the API's own JSON, cursor included
    assert len(page["items"]) == 3
    assert page["next_cursor"] is not None
    everything = list_json(env, "--since", since, "--limit", "10")
    assert [j["id"] for j in everything["items"]][-1] == first["id"]
    assert len(everything["items"]) == 5
    assert everything["next_cursor"] is None


def test_list_follows_next_cursor_across_pages_up_to_the_limit() -> None:
    # Hundreds of jobs to make the real server page are slow to set up: a stub server stands in
    # for the page walk, answering short pages as a text search may.
    pages = {None: (["a", "b"], "c1"), "c1": ([], "c2"), "c2": (["c", "d", "e"], "c3")}
    asked: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        asked.append(params)
        items, cursor = pages[params.get("cursor")]
        return httpx.Response(
            200, json={"items": [{"id": i} for i in items], "next_cursor": cursor}
        )

    with httpx.Client(transport=httpx.MockTransport(handler), base_url="http://stub") as client:
        items, cursor = search_jobs(client, {"type": "noop"}, 4)
    assert [i["id"] for i in items] == ["a", "b", "c", "d"]
    assert cursor == "c3"
    assert [(p.get("cursor"), p["limit"], p["type"]) for p in asked] == [
        (None, "4", "noop"), ("c1", "2", "noop"), ("c2", "2", "noop"),
    ]  # fmt: skip


def test_list_table_fits_the_terminal_and_cuts_with_an_ellipsis(env: dict[str, str]) -> None:
    job = enqueue(env, "probe", "--delay", "3600")
    args = ("list", "--since", job["created_at"])
    narrow = run_cli(*args, env={**env, "COLUMNS": "60"})
    assert narrow.returncode == 0, narrow.stderr
    lines = narrow.stdout.splitlines()
    assert lines[0].split() == ["id", "type", "status", "priority", "tries", "created", "error"]
    assert all(len(line) <= 60 for line in lines), lines
    assert job["id"] not in narrow.stdout
    assert job["id"][:6] in lines[1]
    assert "…" in lines[1]
    assert "delayed" in lines[1].split()
    wide = run_cli(*args, env={**env, "COLUMNS": "200"})
    assert wide.stdout.splitlines()[1].split()[:5] == [
        job["id"],
        "probe",
        "delayed",
        "normal",
        "0/3",
    ]


def test_fit_widths_cuts_free_text_first_then_the_widest() -> None:
    assert fit_widths([10, 5, 40], 100, flexible=2) == [10, 5, 40]
    assert fit_widths([10, 5, 40], 40, flexible=2) == [10, 5, 21]
    assert fit_widths([30, 5, 40], 40, flexible=2) == [19, 5, 12]
    assert sum(fit_widths([30, 9, 8, 40], 20)) + 3 * 2 <= 20


def test_list_with_no_match_says_so(env: dict[str, str]) -> None:
    result = run_cli("list", "--type", "no-such-type", env=env)
    assert (result.returncode, result.stdout) == (0, "no matching jobs\n")


# --- types ---------------------------------------------------------------------------------------


def test_types_lists_every_type_with_defaults_pause_and_limits(
    env: dict[str, str], api: httpx.Client
) -> None:
    assert run_cli("pause", "--type", "hog", env=env).returncode == 0
    assert run_cli("limits", "hog", "--rate", "7/2", "--concurrency", "3", env=env).returncode == 0
    try:
        as_json = run_cli("types", "--json", env=env)
        table = run_cli("types", env={**env, "COLUMNS": "200"})
    finally:
        run_cli("resume", "--type", "hog", env=env)
        run_cli("limits", "hog", "--clear", env=env)
    assert json.loads(as_json.stdout)["items"] == [
        {**t, "paused": t["name"] == "hog" or t["paused"],
         "limits": {"rate": {"limit": 7, "per_seconds": 2.0}, "concurrency": 3}
         if t["name"] == "hog" else t["limits"]}
        for t in api.get("/jobs/types").json()["items"]
    ]  # fmt: skip
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines()[1:]}
    assert set(rows) == {t["name"] for t in api.get("/jobs/types").json()["items"]}
    assert rows["hog"][:7] == ["hog", "normal", "3", "yes", "7/2s", "3", "Log"]
    assert rows["email-sending"][:5] == ["email-sending", "normal", "5", "60s", "no"]


# --- groups --------------------------------------------------------------------------------------


def test_groups_lists_pause_and_limits_then_forgets_a_cleared_group(
    env: dict[str, str], api: httpx.Client
) -> None:
    assert run_cli("groups", "pause", "cli-tenant", env=env).returncode == 0
    limits = run_cli(
        "groups", "limits", "cli-tenant", "--rate", "7/2", "--concurrency", "3", env=env
    )
    assert limits.returncode == 0, limits.stderr
    try:
        as_json = json.loads(run_cli("groups", "list", "--json", env=env).stdout)
        table = run_cli("groups", "list", env={**env, "COLUMNS": "200"})
        over_http = api.get("/groups").json()
    finally:
        run_cli("groups", "resume", "cli-tenant", env=env)
        run_cli("groups", "limits", "cli-tenant", "--clear", env=env)
    assert as_json == over_http
    [mine] = [g for g in as_json["items"] if g["group"] == "cli-tenant"]
    assert mine == {
        "group": "cli-tenant", "pending": 0, "running": 0, "paused": True,
        "limits": {"rate": {"limit": 7, "per_seconds": 2.0}, "concurrency": 3},
    }  # fmt: skip
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines()[1:]}
    assert rows["cli-tenant"] == ["cli-tenant", "0", "0", "yes", "7/2s", "3"]
    # Neither paused nor limited nor holding jobs: the queue forgets it.
    assert "cli-tenant" not in {g["group"] for g in api.get("/groups").json()["items"]}


# --- logs ----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("probe_worker")
def test_logs_print_the_jobs_lines_as_text_and_json(env: dict[str, str], api: httpx.Client) -> None:
    job = enqueue(env, "probe")
    done = wait_for(api, job["id"], lambda j: j["status"] == "completed")
    pid = done["result"]["pid"]
    text = run_cli("logs", job["id"], env=env)
    assert (text.returncode, text.stdout) == (0, f"ran {pid}\n")
    as_json = json.loads(run_cli("logs", job["id"], "--json", env=env).stdout)
    assert as_json == {"id": job["id"], "status": "completed", "logs": [f"ran {pid}"]}


@pytest.mark.slow
@pytest.mark.usefixtures("probe_worker")
def test_logs_follow_prints_new_lines_and_ends_with_the_job(
    env: dict[str, str], api: httpx.Client
) -> None:
    job = enqueue(env, "probe", "--data", '{"seconds": 2}')
    started = time.monotonic()
    result = run_cli("logs", job["id"], "--follow", env=env)
    waited = time.monotonic() - started
    done = api.get(f"/jobs/{job['id']}").json()
    pid = done["result"]["pid"]
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"ran {pid}",
        f'job {job["id"]} completed: {{"pid": {pid}}}',
    ]
    assert waited >= 1.5  # it stayed until the job had run its two seconds


@pytest.mark.slow
@pytest.mark.usefixtures("probe_worker")
@pytest.mark.parametrize("follow_from", ["before", "midway"])
def test_logs_follow_prints_every_line_once_including_the_last_one_before_the_end(
    env: dict[str, str], api: httpx.Client, follow_from: str
) -> None:
    """A job logs 8 lines 0.3 s apart, the last right before it returns; a follower started
    before it runs, or while it runs, prints each exactly once and in order, then the end
    (before: polling every 0.5 s could miss the last line, or print none of it)."""
    job = enqueue(env, "chatty", "--data", '{"lines": 8, "pause_seconds": 0.3}')
    if follow_from == "midway":
        wait_for(api, job["id"], lambda j: len(j["logs"]) >= 3)
    result = run_cli("logs", job["id"], "--follow", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        *(f"line {n}" for n in range(1, 9)),
        f'job {job["id"]} completed: {{"lines": 8}}',
    ]


@pytest.mark.slow
@pytest.mark.usefixtures("probe_worker")
def test_logs_follow_json_is_one_event_per_line(env: dict[str, str], api: httpx.Client) -> None:
    job = enqueue(env, "probe", "--data", '{"seconds": 1}')
    result = run_cli("logs", job["id"], "-f", "--json", env=env)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    pid = events[-1]["job"]["result"]["pid"]
    assert [e["event"] for e in events] == ["log", "end"]
    assert events[0]["line"] == f"ran {pid}"
    detail = api.get(f"/jobs/{job['id']}").json()
    assert events[1]["job"] == {k: v for k, v in detail.items() if k != "logs"}


@pytest.mark.slow
@pytest.mark.usefixtures("probe_worker")
def test_logs_follow_of_a_cancelled_job_prints_its_last_line_and_exits_1(
    env: dict[str, str], api: httpx.Client
) -> None:
    job = enqueue(env, "probe", "--data", '{"seconds": 60}')
    wait_for(api, job["id"], lambda j: j["logs"])
    follower = subprocess.Popen(
        [JOBQUEUE, "logs", job["id"], "--follow"],
        env={**os.environ, **env}, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        time.sleep(1)  # following now (it printed what is there, and reads the event stream)
        assert api.delete(f"/jobs/{job['id']}").status_code == 200
        stdout, stderr = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert follower.returncode == 1
    assert stdout.splitlines()[0].startswith("ran ")
    assert stderr.startswith(f"job {job['id']} ended cancelled")


def test_logs_of_an_unknown_job_exit_3(env: dict[str, str]) -> None:
    for args in (["logs", "no-such-job"], ["logs", "no-such-job", "--follow"]):
        result = run_cli(*args, env=env)
        assert result.returncode == 3
        assert result.stderr == "jobqueue: 404: no job with id 'no-such-job'\n"


# --- read commands take --json -------------------------------------------------------------------


def test_status_stats_and_workers_accept_json(env: dict[str, str], api: httpx.Client) -> None:
    job = enqueue(env, "noop", "--delay", "3600")
    status = json.loads(run_cli("status", job["id"], "--json", env=env).stdout)
    assert status == api.get(f"/jobs/{job['id']}/status").json()
    assert json.loads(run_cli("stats", "--json", env=env).stdout)["counts"]["delayed"] >= 1
    assert isinstance(json.loads(run_cli("workers", "--json", env=env).stdout), list)


# --- usage, version, completion ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "--state", "bogus"], "argument --state: invalid choice: 'bogus'"),
        (["list", "--limit", "0"], "argument --limit: '0' is not a count from 1 to 100000"),
        (["list", "--since", "yesterday"], "argument --since: 'yesterday' is not a time"),
        (["list", "--until", "2026-01-01T00:00"], "give a time zone"),
        (["logs"], "the following arguments are required: id"),
        (["completion", "fish"], "argument shell: invalid choice: 'fish'"),
    ],
)
def test_bad_input_exits_2_before_any_request(args: list[str], message: str) -> None:
    result = run_cli(*args, env={"JOBQUEUE_URL": "http://127.0.0.1:1", "JOBQUEUE_API_KEY": "k"})
    assert result.returncode == 2
    assert message in result.stderr


def test_version_prints_the_installed_package_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"jobqueue {importlib.metadata.version('jobqueue')}\n"


def _top_level_commands() -> list[str]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.choices and a.dest == "command"]
    return list(sub.choices)


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_script_names_every_command(shell: str) -> None:
    result = run_cli("completion", shell)
    assert result.returncode == 0
    commands = _top_level_commands()
    assert {"list", "types", "logs", "completion", "status", "enqueue"} <= set(commands)
    offered = next(x for x in result.stdout.splitlines() if x.strip().startswith("'')"))
    assert offered.split("'")[3].split() == [*commands, "-h", "--help", "--version"]
    assert "_jobqueue jobqueue" in result.stdout.splitlines()[-1]


def _complete(script: Path, *words: str) -> list[str]:
    """What bash offers after `words` (the last is the word being completed)."""
    probe = f'source {script}; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _jobqueue; '
    probe += 'printf "%s\\n" "${COMPREPLY[@]}"'
    result = subprocess.run(
        ["bash", "-c", probe, "bash", *words], capture_output=True, text=True, check=True
    )
    return result.stdout.split()


def test_bash_completion_completes_commands_options_and_choices(tmp_path: Path) -> None:
    script = tmp_path / "jobqueue.bash"
    script.write_text(run_cli("completion", "bash").stdout)
    assert _complete(script, "jobqueue", "lo") == ["logs"]
    assert _complete(script, "jobqueue", "list", "--st") == ["--state"]
    assert _complete(script, "jobqueue", "list", "--state", "p") == ["pending", "processing"]
    assert _complete(script, "jobqueue", "--url", "x", "logs", "j1", "--f") == ["--follow"]
    assert _complete(script, "jobqueue", "completion", "") == ["-h", "--help", "bash", "zsh"]
    assert "trigger" in _complete(script, "jobqueue", "schedules", "")
