"""`jobqueue schedules ...` as users run it: real processes against a real API server, with the
schedule's Redis keys checked after each change."""

from __future__ import annotations

import json
import math
import re
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis
from api_harness import API_KEY

from service.cli import build_parser
from service.queue.keys import QueueKeys
from service.queue.states import Priority
from tests.cli.cli_runner import run_against

BERLIN = ZoneInfo("Europe/Berlin")


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The single stderr line of a refused command, after asserting its exit code."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def new_id() -> str:
    return f"s-{uuid.uuid4().hex[:10]}"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def next_berlin_2am(now: datetime) -> datetime:
    day = now.astimezone(BERLIN).date()
    for offset in range(3):
        tick = datetime.combine(day + timedelta(days=offset), datetime.min.time(), BERLIN)
        tick = tick.replace(hour=2)
        if tick > now:
            return tick.astimezone(UTC)
    raise AssertionError("no 02:00 within three days")


@pytest.fixture
def keys(cli_queue: str) -> QueueKeys:
    return QueueKeys("jqtest", cli_queue)


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def api(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers={"X-API-Key": API_KEY}) as client:
        yield client


def add_cron(server: str, schedule_id: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_against(server, "schedules", "add", schedule_id, "noop", "--cron", "0 2 * * *",
                   "--timezone", "Europe/Berlin", *extra)  # fmt: skip


def test_every_schedules_command_parses_to_its_own_handler() -> None:
    needed = {"list": [], "add": ["x", "noop", "--every", "5"], "show": ["x"], "rm": ["x"],
              "pause": ["x"], "resume": ["x"], "trigger": ["x"]}  # fmt: skip
    parser = build_parser()
    handlers = {parser.parse_args(["schedules", name, *a]).func for name, a in needed.items()}
    assert len(handlers) == len(needed)


def test_add_cron_in_a_timezone_creates_then_replaces(
    server: str, keys: QueueKeys, store: redis.Redis
) -> None:
    sid = new_id()
    before = datetime.now(UTC)
    created = add_cron(server, sid, "--data", '{"sleep_seconds": 0}', "--priority", "high",
                       "--attempts", "2")  # fmt: skip
    schedule = ok_json(created)
    assert created.stderr == f"created schedule {sid}\n"
    assert schedule["spec"]["cron"] == "0 2 * * *"
    assert schedule["spec"]["every_seconds"] is None
    assert schedule["spec"]["timezone"] == "Europe/Berlin"
    assert schedule["spec"]["data"] == {"sleep_seconds": 0}
    assert (schedule["job"]["priority"], schedule["job"]["attempts"]) == (Priority.HIGH, 2)
    assert at(schedule["next_run_at"]) == next_berlin_2am(before)
    upcoming = [at(t) for t in schedule["upcoming"]]
    assert upcoming[0] == at(schedule["next_run_at"])
    assert [t.astimezone(BERLIN).hour for t in upcoming] == [2] * 5
    assert (schedule["paused"], schedule["runs"], schedule["last_runs"]) == (False, 0, [])
    # Stored: the hash with the spec as sent, scored at the next tick.
    stored = json.loads(store.hget(keys.schedule(sid), "spec") or "{}")
    assert (stored["cron"], stored["timezone"]) == ("0 2 * * *", "Europe/Berlin")
    score = store.zscore(keys.schedules, sid)
    assert score == at(schedule["next_run_at"]).timestamp() * 1000

    replaced = add_cron(server, sid, "--priority", "low")
    assert replaced.stderr == f"replaced schedule {sid}\n"
    assert ok_json(replaced)["job"]["priority"] == Priority.LOW
    assert json.loads(store.hget(keys.schedule(sid), "job") or "{}")["priority"] == Priority.LOW


def test_add_every_with_bounds(server: str, keys: QueueKeys, store: redis.Redis) -> None:
    sid = new_id()
    plus_one = timezone(timedelta(hours=1))
    start = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0).astimezone(plus_one)
    end = start + timedelta(days=2)
    result = run_against(server, "schedules", "add", sid, "noop", "--every", "3600",
                     "--start-at", start.isoformat(), "--end-at", end.isoformat(),
                     "--limit", "3", "--misfire", "skip")  # fmt: skip
    schedule = ok_json(result)
    assert result.stderr == f"created schedule {sid}\n"
    spec = schedule["spec"]
    assert (spec["every_seconds"], spec["cron"], spec["limit"], spec["misfire"]) == (
        3600, None, 3, "skip",
    )  # fmt: skip
    assert at(spec["start_at"]) == start
    assert at(spec["end_at"]) == end
    # The first tick of an interval that starts later is its start.
    assert at(schedule["next_run_at"]) == start
    # Three runs, as --limit 3 says (not the five upcoming of an unlimited schedule).
    assert [at(t) - start for t in schedule["upcoming"]] == [timedelta(hours=h) for h in range(3)]
    assert store.zscore(keys.schedules, sid) == start.timestamp() * 1000


def table_row(table: str, schedule_id: str) -> list[str]:
    """The cells of the row of `schedule_id` in the CLI's borderless table (columns two or
    more spaces apart; no cell holds two spaces in a row)."""
    for line in table.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells[0] == schedule_id:
            return cells
    raise AssertionError(f"no row for {schedule_id} in:\n{table}")


def test_list_prints_a_table_and_the_apis_json(server: str, api: httpx.Client) -> None:
    cron_id, every_id = new_id(), new_id()
    ok_json(add_cron(server, cron_id))
    every = ok_json(run_against(server, "schedules", "add", every_id, "noop", "--every", "90"))

    table = run_against(server, "schedules", "list")
    assert table.returncode == 0, table.stderr
    header = table.stdout.splitlines()[0]
    assert re.split(r"\s{2,}", header.strip()) == [
        "id", "type", "cadence", "next run (UTC)", "paused", "runs",
    ]  # fmt: skip
    next_2am = next_berlin_2am(datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S")
    assert table_row(table.stdout, cron_id) == [
        cron_id, "noop", "0 2 * * * (Europe/Berlin)", next_2am, "no", "0",
    ]  # fmt: skip
    every_next = at(every["next_run_at"]).strftime("%Y-%m-%d %H:%M:%S")
    assert table_row(table.stdout, every_id) == [
        every_id, "noop", "every 90s", every_next, "no", "0",
    ]  # fmt: skip

    listed = ok_json(run_against(server, "schedules", "list", "--json"))
    assert listed == api.get("/schedules").json()
    assert {cron_id, every_id} <= {s["id"] for s in listed}


def test_pause_and_resume_show_in_show_list_and_redis(
    server: str, keys: QueueKeys, store: redis.Redis
) -> None:
    sid = new_id()
    ok_json(add_cron(server, sid))

    paused = ok_json(run_against(server, "schedules", "pause", sid))
    assert (paused["paused"], paused["next_run_at"], paused["upcoming"]) == (True, None, [])
    shown = ok_json(run_against(server, "schedules", "show", sid))
    assert (shown["paused"], shown["next_run_at"]) == (True, None)
    assert store.hget(keys.schedule(sid), "paused") == "1"
    assert store.zscore(keys.schedules, sid) == math.inf
    row = table_row(run_against(server, "schedules", "list").stdout, sid)
    assert row[3:5] == ["paused", "yes"]

    resumed = ok_json(run_against(server, "schedules", "resume", sid))
    assert resumed["paused"] is False
    shown = ok_json(run_against(server, "schedules", "show", sid))
    assert shown["paused"] is False
    assert at(shown["next_run_at"]) == next_berlin_2am(datetime.now(UTC))
    assert len(shown["upcoming"]) == 5
    assert store.hget(keys.schedule(sid), "paused") == "0"
    assert store.zscore(keys.schedules, sid) == at(shown["next_run_at"]).timestamp() * 1000


def test_trigger_prints_the_id_of_a_job_that_exists(
    server: str, api: httpx.Client, keys: QueueKeys, store: redis.Redis
) -> None:
    sid = new_id()
    ok_json(add_cron(server, sid, "--data", '{"sleep_seconds": 0}'))

    triggered = run_against(server, "schedules", "trigger", sid)
    assert triggered.returncode == 0, triggered.stderr
    job_id = triggered.stdout.strip()
    assert job_id.startswith(f"{sid}:now-")
    assert triggered.stdout == job_id + "\n"  # the id alone, for `ID=$(...)`

    status = ok_json(run_against(server, "status", job_id))
    assert status["status"] == "pending"
    job = api.get(f"/jobs/{job_id}").json()
    assert (job["id"], job["type"], job["data"]["sleep_seconds"]) == (job_id, "noop", 0)
    assert store.exists(keys.job(job_id)) == 1
    shown = ok_json(run_against(server, "schedules", "show", sid))
    assert shown["last_runs"] == [{"job_id": job_id, "state": "pending"}]
    assert shown["runs"] == 0  # a trigger runs outside the cadence and is not counted

    as_json = ok_json(run_against(server, "schedules", "trigger", sid, "--json"))
    assert as_json["job_id"].startswith(f"{sid}:now-")
    assert as_json["job_id"] != job_id


def test_rm_removes_the_schedule_but_not_its_jobs(
    server: str, keys: QueueKeys, store: redis.Redis
) -> None:
    sid = new_id()
    ok_json(add_cron(server, sid))
    job_id = run_against(server, "schedules", "trigger", sid).stdout.strip()

    removed = run_against(server, "schedules", "rm", sid)
    assert (removed.returncode, removed.stdout) == (0, f"removed schedule {sid}\n"), removed.stderr
    assert store.exists(keys.schedule(sid), keys.schedule_runs(sid)) == 0
    assert store.zscore(keys.schedules, sid) is None
    assert ok_json(run_against(server, "status", job_id))["status"] == "pending"

    gone = f"jobqueue: 404: no schedule with id '{sid}'"
    for command in ("show", "rm", "pause", "resume", "trigger"):
        assert one_line_error(run_against(server, "schedules", command, sid), 3) == gone
    listed = ok_json(run_against(server, "schedules", "list", "--json"))
    assert sid not in {s["id"] for s in listed}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--cron", "0 2 * * *", "--every", "60"],
         "give exactly one of --cron EXPR and --every SECONDS"),
        ([], "give exactly one of --cron EXPR and --every SECONDS"),
        (["--every", "60", "--timezone", "Europe/Berlin"],
         "--timezone applies to --cron only, not to --every"),
        (["--every", "60", "--data", "[1, 2]"],
         "--data must be a JSON object such as '{\"sleep_seconds\": 1}', not list '[1, 2]'"),
        (["--every", "60", "--start-at", "2027-01-01T09:00:00"],
         "--start-at must be an ISO 8601 time with an offset, e.g. 2027-01-01T09:00:00+01:00, "
         "not '2027-01-01T09:00:00'"),
        (["--every", "60", "--end-at", "next tuesday"],
         "--end-at must be an ISO 8601 time with an offset, e.g. 2027-01-01T09:00:00+01:00, "
         "not 'next tuesday'"),
    ],
)  # fmt: skip
def test_bad_local_input_exits_2_and_sends_nothing(
    server: str, keys: QueueKeys, store: redis.Redis, options: list[str], message: str
) -> None:
    sid = new_id()
    result = run_against(server, "schedules", "add", sid, "noop", *options)
    assert one_line_error(result, 2) == f"jobqueue: {message}"
    assert store.exists(keys.schedule(sid)) == 0


def test_data_that_is_not_json_exits_2() -> None:
    result = run_against("http://127.0.0.1:1", "schedules", "add", "x", "noop", "--every", "60",
                     "--data", "{oops")  # fmt: skip
    assert one_line_error(result, 2).startswith("jobqueue: --data is not valid JSON: ")


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--cron", "not a cron"], "not a cron expression"),
        (["--cron", "0 2 * * *", "--timezone", "Mars/Olympus"], "unknown IANA timezone"),
        (["--every", "0"], "every_seconds"),
    ],
)
def test_api_refusals_exit_3_with_the_apis_message(
    server: str, keys: QueueKeys, store: redis.Redis, options: list[str], fragment: str
) -> None:
    sid = new_id()
    line = one_line_error(run_against(server, "schedules", "add", sid, "noop", *options), 3)
    assert line.startswith("jobqueue: 422: ")
    assert fragment in line
    assert store.exists(keys.schedule(sid)) == 0


def test_an_unknown_job_type_exits_3_naming_the_known_types(server: str) -> None:
    result = run_against(server, "schedules", "add", new_id(), "no-such-type", "--every", "60")
    line = one_line_error(result, 3)
    assert line.startswith("jobqueue: 422: ")
    assert "known types" in line
