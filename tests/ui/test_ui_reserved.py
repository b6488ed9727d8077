"""The overview tells running jobs from prefetched ones: a worker with concurrency 1 and
prefetch 4 holding five long jobs shows processing 1 and reserved 4, in a real browser against
a real API and worker process."""

from __future__ import annotations

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

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

PREFETCH = 4


@pytest.fixture
def prefetching_system(redis_url: str, tmp_path: Path) -> Iterator[System]:
    """API and one worker that runs one job at a time and prefetches PREFETCH more."""
    with running_system(
        redis_url, tmp_path, worker_concurrency=1, worker_prefetch=PREFETCH, heartbeat_seconds=0.2
    ) as running:
        yield running


def test_overview_shows_prefetched_jobs_as_reserved_not_processing(
    prefetching_system: System,
    browser: Browser,  # noqa: F811
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
