"""The dashboard in a real browser against a real system: API, worker and Redis processes.

An operator enters the key, enqueues jobs through the form, watches a progress bar move,
cancels one job, retries a failed one, and sees the overview's counts change. Screenshots of
the overview and a job detail go to `test-artifacts/` (gitignored) for a human to look at.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from service.queue.consumer import Consumer
from service.queue.keys import QueueKeys
from service.queue.queue import JobQueue
from tests.support.workers import REPO, running_worker, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ARTIFACTS = REPO / "test-artifacts"
# Looked up, not hard-coded: `CHROMIUM` names one; else the first of these on PATH; else
# Playwright's own download (`playwright install chromium`). `make browsers` installs Debian's.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
# Flags for a headless Chromium in CI: no sandbox (containers), and nothing that phones home,
# so the test also proves the page needs no network beyond the app itself.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Imports of every job type (Pillow, fpdf2, Jinja2) take a while on a busy CI machine.
STARTUP_SECONDS = 60.0
# Long enough for a job to run a few seconds and the page to notice; every wait is bounded.
JOB_SECONDS = 20_000


@dataclass(frozen=True)
class System:
    """A running API + worker on one test queue."""

    base_url: str
    api_key: str
    redis_url: str
    queue_name: str


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_ready(base_url: str, api_key: str, api: subprocess.Popen[bytes]) -> None:
    """Wait (bounded) until the API answers and a worker has sent its heartbeat."""
    deadline = time.monotonic() + STARTUP_SECONDS
    headers = {"X-API-Key": api_key}
    while time.monotonic() < deadline:
        if api.poll() is not None:
            raise RuntimeError("the API process exited during start-up")
        try:
            workers = httpx.get(f"{base_url}/jobs/workers", headers=headers, timeout=2)
            if workers.status_code == 200 and workers.json()["items"]:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.2)
    raise TimeoutError(f"API or worker not ready within {STARTUP_SECONDS} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def delete_keys(redis_url: str, queue_name: str) -> None:
    """Remove the test queue's keys (SCAN, never KEYS)."""
    with Redis.from_url(redis_url) as client:
        for key in client.scan_iter(match=f"jqtest:{{{queue_name}}}:*", count=1000):
            client.delete(key)


@pytest.fixture
def system(redis_url: str, tmp_path: Path) -> Iterator[System]:
    """API and one worker process on a fresh queue, always stopped afterwards."""
    with running_system(redis_url, tmp_path) as running:
        yield running


@contextmanager
def running_system(redis_url: str, tmp_path: Path, **worker_settings: object) -> Iterator[System]:
    """API and one worker process (with `worker_settings` on top) on a fresh queue."""
    queue_name = "ui-" + secrets.token_hex(6)
    api_key = "ui-test-" + secrets.token_urlsafe(24)
    # A short grace: the job still running at the end is handed back, not waited for.
    env = worker_env(
        redis_url, queue_name, api_keys=api_key, worker_count=1, shutdown_grace_seconds=1,
        **worker_settings,
    )  # fmt: skip
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    api_log = (tmp_path / "api.log").open("wb")
    api = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "service.api.app:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        env=env, cwd=REPO, stdout=api_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        with running_worker(env, tmp_path / "worker.log"):
            wait_until_ready(base_url, api_key, api)
            yield System(base_url, api_key, redis_url, queue_name)
    finally:
        stop(api)
        api_log.close()
        delete_keys(redis_url, queue_name)


def find_chromium() -> str | None:
    """The Chromium to drive; None lets Playwright use its own."""
    named = os.environ.get("CHROMIUM")
    if named:
        return named
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium driven by Playwright."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def status_badge(page: Page) -> Locator:
    """The job detail's status value."""
    return page.get_by_test_id("job-status")


def enqueue_noop(page: Page, *, attempts: int | None = None, **data: int) -> str:
    """Fill the enqueue form for a noop job, submit it, and return the new job's id."""
    page.get_by_role("link", name="Enqueue", exact=True).click()
    expect(page.get_by_role("heading", name="Enqueue a job")).to_be_visible()
    page.get_by_label("Job type").select_option("noop")
    expect(page.get_by_label("progress_steps", exact=True)).to_be_visible()  # noop's form is up
    expect(page.get_by_label("Job type")).to_have_value("noop")
    for name, value in data.items():
        page.get_by_label(name, exact=True).fill(str(value))
    if attempts is not None:
        page.get_by_label("Attempts", exact=True).fill(str(attempts))
    page.get_by_role("button", name="Enqueue job").click()
    expect(page).to_have_url(re.compile(r"#/job/[0-9a-f]+$"))
    return page.url.rsplit("/", 1)[1]


def rejected_payload_marks_the_field(page: Page) -> None:
    """The API's 422 is shown next to the field it names, and nothing is enqueued."""
    page.get_by_role("link", name="Enqueue", exact=True).click()
    page.get_by_label("Job type").select_option("noop")
    sleep = page.get_by_label("sleep_seconds", exact=True)
    sleep.fill("5000")  # the payload model allows at most 3600
    page.get_by_role("button", name="Enqueue job").click()
    expect(sleep).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#field-data-sleep_seconds-error")).to_contain_text("3600")
    expect(page).to_have_url(re.compile(r"#/enqueue"))


def sign_in(page: Page, system: System) -> None:
    """Open the dashboard, try a wrong key (refused), then the right one."""
    page.goto(f"{system.base_url}/ui")
    page.get_by_label("API key").fill("not-the-key")
    page.get_by_role("button", name="Open dashboard").click()
    expect(page.get_by_role("alert")).to_have_text("That key was refused.")
    page.get_by_label("API key").fill(system.api_key)
    page.get_by_role("button", name="Open dashboard").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_test_id("count-completed")).to_have_text("0")


def watch_progress(page: Page) -> None:
    """A 3 s job in 6 steps: the bar shows a value strictly between 0 and 100, then 100."""
    bar = page.get_by_role("progressbar", name="Progress")
    # 16.67, 33.33, 50, 66.67, 83.33: any of these proves the bar moved while the job ran.
    expect(bar).to_have_attribute("value", re.compile(r"^[1-9]\d?(\.\d+)?$"), timeout=JOB_SECONDS)
    expect(page.get_by_test_id("progress-text")).not_to_have_text("0%")
    page.screenshot(path=ARTIFACTS / "dashboard-job-running.png", full_page=True)
    expect(bar).to_have_attribute("value", "100", timeout=JOB_SECONDS)
    expect(status_badge(page)).to_have_text("completed", timeout=JOB_SECONDS)
    expect(page.get_by_test_id("job-result")).to_contain_text('"slept_seconds": 3')


def cancel_running_job(page: Page) -> None:
    """A 30 s job is cancelled from its page after a confirmation."""
    expect(status_badge(page)).to_have_text("processing", timeout=JOB_SECONDS)
    page.get_by_role("button", name="Cancel job").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel job").click()
    expect(status_badge(page)).to_have_text("cancelled", timeout=JOB_SECONDS)
    expect(page.get_by_role("button", name="Retry job")).to_be_visible()


def retry_failed_job(page: Page) -> None:
    """A job that always fails ends failed with its stack trace; retry runs it once more."""
    expect(status_badge(page)).to_have_text("failed", timeout=JOB_SECONDS)
    expect(page.get_by_test_id("job-error")).to_contain_text("noop fails its first 5 attempt(s)")
    expect(page.get_by_text("Traceback (most recent call last)")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "dashboard-job-failed.png", full_page=True)
    page.get_by_role("button", name="Retry job").click()
    timeline = page.get_by_role("list", name="State changes").get_by_role("listitem")
    # failed -> pending (the retry) -> processing -> failed again: two failures on the timeline.
    expect(timeline.filter(has_text="failed")).to_have_count(2, timeout=JOB_SECONDS)
    expect(status_badge(page)).to_have_text("failed")


def check_overview(page: Page, running_id: str) -> None:
    """The overview counts what happened, charts it, and lists the worker with its job."""
    page.get_by_role("link", name="Overview").click()
    expect(page.get_by_test_id("count-completed")).to_have_text("1", timeout=JOB_SECONDS)
    expect(page.get_by_test_id("count-processing")).to_have_text("1")
    expect(page.get_by_test_id("count-cancelled")).to_have_text("1")
    expect(page.get_by_test_id("count-failed")).to_have_text("1")
    completed_chart = re.compile(r"^completed per minute .*: 1 in total$")
    failed_chart = re.compile(r"^failed per minute .*: 2 in total$")
    expect(page.get_by_role("img", name=completed_chart)).to_be_visible()
    expect(page.get_by_role("img", name=failed_chart)).to_be_visible()
    workers = page.get_by_role("region", name="Live workers")
    expect(workers.get_by_role("row")).to_have_count(2)  # header + our one worker
    expect(workers.get_by_role("link", name=running_id[:12])).to_be_visible()
    expect(workers.get_by_test_id("worker-stalls")).to_have_text("0")  # its stall detector's count
    page.screenshot(path=ARTIFACTS / "dashboard-overview.png", full_page=True)


def append_log(system: System, job_id: str, line: str) -> None:
    """Write a log line the way a job does (through the worker-side queue API)."""

    async def write() -> None:
        redis = AsyncRedis.from_url(system.redis_url, decode_responses=True)
        try:
            queue = JobQueue(redis, QueueKeys("jqtest", system.queue_name))
            await Consumer(queue, "ui-test", lease_seconds=30).log(job_id, line)
        finally:
            await redis.aclose()

    # Playwright's sync API runs an event loop in this thread; the queue API gets its own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, write()).result(timeout=10)


def check_lists(page: Page, failed_id: str, completed_id: str) -> None:
    """Lists per status and per type, search by id, and "retry all failed"."""
    page.get_by_role("navigation", name="Main").get_by_role("link", name="failed").click()
    expect(page.get_by_role("link", name=failed_id[:12])).to_be_visible()
    page.get_by_role("button", name="Retry all failed").click()
    page.get_by_role("dialog").get_by_role("button", name="Retry all").click()
    expect(page.get_by_role("status")).to_contain_text("1 of 1 failed job(s) queued again.")
    page.goto(f"{page.url.split('#')[0]}#/types/noop")
    expect(page.get_by_role("table").get_by_role("row")).to_have_count(5)  # header + 4 jobs
    page.get_by_label("Find job by id").fill(completed_id)
    page.get_by_role("button", name="Find").click()
    expect(status_badge(page)).to_have_text("completed")


def check_log_is_text(page: Page, system: System, job_id: str) -> None:
    """Log lines show on the job page as text: markup in job output is never run."""
    append_log(system, job_id, 'step done <img src=x id="injected">')
    page.get_by_label("Find job by id").fill(job_id)
    page.get_by_role("button", name="Find").click()
    page.reload()  # the job finished long ago: only a fresh read shows the new line
    expect(page.get_by_test_id("job-log")).to_have_text('step done <img src=x id="injected">')
    expect(page.locator("#injected")).to_have_count(0)


def test_operator_steers_the_queue_from_the_dashboard(system: System, browser: Browser) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    expect.set_options(timeout=10_000)

    try:
        sign_in(page, system)
        rejected_payload_marks_the_field(page)
        progress_id = enqueue_noop(page, sleep_seconds=3, progress_steps=6)
        watch_progress(page)
        page.screenshot(path=ARTIFACTS / "dashboard-job-detail.png", full_page=True)
        enqueue_noop(page, sleep_seconds=30)
        cancel_running_job(page)
        failed_id = enqueue_noop(page, attempts=1, fail_first_attempts=5)
        retry_failed_job(page)
        running_id = enqueue_noop(page, sleep_seconds=60)
        expect(status_badge(page)).to_have_text("processing", timeout=JOB_SECONDS)
        check_overview(page, running_id)
        check_lists(page, failed_id, progress_id)
        check_log_is_text(page, system, progress_id)
    except Exception:
        page.screenshot(path=ARTIFACTS / "dashboard-failure.png", full_page=True)
        raise

    # The key lives only in this tab's sessionStorage and travels only in a header.
    assert page.evaluate("sessionStorage.getItem('jobqueue.apiKey')") == system.api_key
    assert page.evaluate("localStorage.length") == 0
    assert not [url for url in requested if system.api_key in url]
    assert any(url.endswith(f"/jobs/{progress_id}/events") for url in requested)
    assert any(url.endswith("/ui/api/events") for url in requested)  # the overview's stream
    # Everything came from the app itself: no CDN, no other host.
    assert {url.split("/")[2] for url in requested} == {system.base_url.split("/")[2]}
    assert errors == []
