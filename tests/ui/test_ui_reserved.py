"""The overview tells running jobs from prefetched ones: a worker with concurrency 1 and
prefetch 4 holding five long jobs shows processing 1 and reserved 4, in a real browser against
a real API and worker process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.ui.test_ui_browser import (  # noqa: F401 (browser is a fixture)
    JOB_SECONDS,
    System,
    browser,
    running_system,
    sign_in,
)
from tests.ui.test_ui_layout import check_layout

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

PREFETCH = 4


@pytest.fixture
def prefetching_system(redis_url: str, tmp_path: Path) -> Iterator[System]:
    """API and one worker that runs one job at a time and prefetches PREFETCH more."""
    with running_system(
        redis_url,
        tmp_path,
        worker_concurrency=1,
        worker_prefetch=PREFETCH,
        heartbeat_seconds=0.2,
        lease_seconds=3,  # a start reaches Redis with the next renewal: every second here
    ) as running:
        yield running


def wait_for_one_started(system: System) -> str:
    """The one job whose start a renewal recorded (within a second or two)."""
    deadline = time.monotonic() + JOB_SECONDS / 1000
    while time.monotonic() < deadline:
        active = httpx.get(
            f"{system.base_url}/jobs/active", headers={"X-API-Key": system.api_key}, timeout=10
        ).json()["items"]
        started = [job["id"] for job in active if not job["reserved"]]
        if started:
            [running] = started
            return str(running)
        time.sleep(0.2)
    raise AssertionError("no job's start was recorded")


def test_overview_shows_prefetched_jobs_as_reserved_not_processing(
    prefetching_system: System,
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    system = prefetching_system
    headers = {"X-API-Key": system.api_key}
    # One bulk enqueue, so the idle worker takes all five in one dequeue: a job that arrives
    # while every slot is busy waits in pending until the worker takes again.
    jobs = [{"type": "noop", "data": {"sleep_seconds": 600}}] * (1 + PREFETCH)
    url = f"{system.base_url}/jobs/enqueue/bulk"
    reply = httpx.post(url, json={"jobs": jobs}, headers=headers, timeout=10)
    assert reply.status_code == 201, reply.text
    page = browser.new_page()
    sign_in(page, system)
    expect(page.get_by_test_id("count-processing")).to_have_text("1", timeout=JOB_SECONDS)
    expect(page.get_by_test_id("count-reserved")).to_have_text(str(PREFETCH), timeout=JOB_SECONDS)
    expect(page.get_by_test_id("count-pending")).to_have_text("0")

    # The job page and the active list mark the prefetched jobs reserved, with no start time,
    # and the running one not; both fit desktop and phone widths with the marker.
    ids = [job["id"] for job in reply.json()["items"]]
    running = wait_for_one_started(system)
    reserved = next(i for i in ids if i != running)
    page.goto(f"{system.base_url}/ui#/job/{reserved}")
    expect(page.get_by_test_id("job-status").get_by_test_id("reserved")).to_be_visible()
    expect(page.locator(".facts").first).to_contain_text("not yet (reserved)")
    check_layout(page, tmp_path, "job-reserved")
    page.goto(f"{system.base_url}/ui#/job/{running}")
    expect(page.get_by_test_id("job-status")).to_have_text("processing", timeout=JOB_SECONDS)
    page.goto(f"{system.base_url}/ui#/jobs/active")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(1 + PREFETCH, timeout=JOB_SECONDS)
    expect(page.locator("tbody").get_by_test_id("reserved")).to_have_count(PREFETCH)
    expect(page.locator(f'tr[data-id="{running}"]').get_by_test_id("reserved")).to_have_count(0)
    check_layout(page, tmp_path, "list-reserved")
