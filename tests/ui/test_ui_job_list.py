"""The job list (#/jobs/<state>) in a real browser against a real system: API, worker, Redis.

Jobs of two types are enqueued through the API (failed noop jobs, completed noop jobs, delayed
report-generation jobs); the page's filters, search, sort and cursor pages must show exactly the
jobs the API returns, and bulk cancel / retry / delete must change what the API reports, after
a confirmation that names the count. The page must also fit a 390 px phone in both schemes.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.ui.test_ui_browser import System, browser, sign_in, system  # noqa: F401 (fixtures)
from tests.ui.test_ui_layout import OFF_SCREEN

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

# Bounds every wait for the worker to settle jobs; they normally take well under a second.
SETTLE_SECONDS = 30.0
FAILED_ERROR = "noop fails its first 5 attempt(s)"
# The browser shows times in its own zone; UTC makes the expected text independent of the host.
TIMEZONE = "UTC"


@dataclass(frozen=True)
class Jobs:
    """The jobs each test starts with, in enqueue order."""

    failed: list[str]
    completed: list[str]
    delayed: list[str]

    @property
    def all(self) -> list[str]:
        return self.failed + self.completed + self.delayed


def call(app: System, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method,
        f"{app.base_url}{path}",
        headers={"X-API-Key": app.api_key},
        timeout=10,
        **kwargs,
    )


def enqueue_job(app: System, job_type: str, data: dict[str, Any], **options: Any) -> str:
    response = call(app, "POST", f"/{job_type}/enqueue", json={"data": data, **options})
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


def state_of(app: System, job_id: str) -> str:
    response = call(app, "GET", f"/jobs/{job_id}/status")
    assert response.status_code == 200, response.text
    state: str = response.json()["status"]
    return state


def wait_for_state(app: System, ids: list[str], state: str) -> None:
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        if all(state_of(app, job_id) == state for job_id in ids):
            return
        time.sleep(0.2)
    raise TimeoutError(f"jobs not {state}: {[(i, state_of(app, i)) for i in ids]}")


def make_jobs(app: System) -> Jobs:
    """Three failed and two completed noop jobs, three report-generation jobs delayed 1 h."""
    failed = [enqueue_job(app, "noop", {"fail_first_attempts": 5}, attempts=1) for _ in range(3)]
    completed = [enqueue_job(app, "noop", {"sleep_seconds": 0}) for _ in range(2)]
    delayed = [
        enqueue_job(app, "report-generation", {"source": "queue-stats"}, delay_seconds=3600)
        for _ in range(3)
    ]
    wait_for_state(app, failed, "failed")
    wait_for_state(app, completed, "completed")
    wait_for_state(app, delayed, "delayed")
    return Jobs(failed, completed, delayed)


def api_order(app: System, **query: str) -> list[dict[str, Any]]:
    response = call(app, "GET", "/jobs", params={"limit": "100", **query})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def rows(page: Page) -> Locator:
    return page.locator("table.job-list tbody tr")


def row_ids(page: Page) -> list[str]:
    ids: list[str] = rows(page).evaluate_all("rows => rows.map((row) => row.dataset.id)")
    return ids


def cell(page: Page, job_id: str, label: str) -> Locator:
    return page.locator(f'tr[data-id="{job_id}"] td[data-label="{label}"]')


def open_list(page: Page, app: System, hash_path: str) -> None:
    page.goto(f"{app.base_url}/ui{hash_path}")
    expect(page.locator("main h1")).to_be_visible()


def local_text(iso: str) -> str:
    """How the page writes a time (YYYY-MM-DD HH:MM:SS in the browser's zone, here UTC)."""
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def new_page(browser: Browser, errors: list[str], width: int = 1280) -> Page:  # noqa: F811
    """A page in UTC that records its script errors in `errors`."""
    page = browser.new_page(viewport={"width": width, "height": 900}, timezone_id=TIMEZONE)
    page.on("pageerror", lambda error: errors.append(str(error)))
    expect.set_options(timeout=10_000)
    return page


def check_type_filter_and_runs_at(page: Page, app: System, jobs: Jobs) -> None:
    """Filtering by type shows only that type; delayed rows show when they run; a reload
    keeps the filter."""
    page.get_by_label("Type", exact=True).select_option("report-generation")
    expect(page).to_have_url(re.compile(r"#/jobs/all\?type=report-generation$"))
    expect(rows(page)).to_have_count(3)
    expect(rows(page).locator('td[data-label="Type"]')).to_have_text(["report-generation"] * 3)
    assert sorted(row_ids(page)) == sorted(jobs.delayed)
    for item in api_order(app, state="delayed"):
        expect(cell(page, item["id"], "Runs at")).to_have_text(local_text(item["runs_at"]))
        expect(cell(page, item["id"], "State")).to_have_text("delayed")
        expect(cell(page, item["id"], "Wait")).to_have_text("—")  # not due yet: no wait
    page.reload()
    expect(page.get_by_label("Type", exact=True)).to_have_value("report-generation")
    expect(rows(page)).to_have_count(3)
    assert sorted(row_ids(page)) == sorted(jobs.delayed)


def check_state_filter_and_errors(page: Page, jobs: Jobs) -> None:
    """Filtering by state shows only failed jobs, each with its error."""
    page.get_by_label("Type", exact=True).select_option("")
    expect(rows(page)).to_have_count(8)
    page.get_by_label("State", exact=True).select_option("failed")
    expect(page).to_have_url(re.compile(r"#/jobs/failed$"))
    expect(page.locator("main h1")).to_have_text("Failed jobs")
    expect(rows(page)).to_have_count(3)
    expect(rows(page).locator('td[data-label="State"]')).to_have_text(["failed"] * 3)
    errors = rows(page).locator('td[data-label="Error"]')
    expect(errors).to_have_text([re.compile(re.escape(FAILED_ERROR))] * 3)
    assert sorted(row_ids(page)) == sorted(jobs.failed)
    for job_id in jobs.failed:
        expect(cell(page, job_id, "Attempts")).to_have_text("1/1")
        expect(cell(page, job_id, "Run")).to_have_text(re.compile(r"^\d+(\.\d)? m?s$"))


def check_search_by_id(page: Page, jobs: Jobs) -> None:
    """The search box finds one job by its id, across states."""
    page.get_by_label("State", exact=True).select_option("")
    expect(rows(page)).to_have_count(8)
    search = page.get_by_label("Search", exact=True)
    search.fill(jobs.completed[1])
    search.press("Enter")
    expect(rows(page)).to_have_count(1)
    assert row_ids(page) == [jobs.completed[1]]
    expect(cell(page, jobs.completed[1], "State")).to_have_text("completed")
    expect(page.get_by_label("Search", exact=True)).to_be_focused()  # the keyboard stays put


def check_sort(page: Page, app: System) -> None:
    """Oldest first and newest first show the API's creation order and its reverse."""
    oldest = [item["id"] for item in api_order(app, sort="created")]
    assert len(oldest) == 8
    page.get_by_role("link", name="Clear filters").click()
    expect(rows(page)).to_have_count(8)
    assert row_ids(page) == oldest[::-1]  # newest first by default
    page.get_by_label("Sort", exact=True).select_option("created")
    expect(rows(page).first).to_have_attribute("data-id", oldest[0])
    assert row_ids(page) == oldest
    page.get_by_label("Sort", exact=True).select_option("-created")
    expect(rows(page).first).to_have_attribute("data-id", oldest[-1])
    assert row_ids(page) == oldest[::-1]


def check_time_range(page: Page) -> None:
    """Created from an hour ahead matches nothing; created until an hour ahead matches all."""
    ahead = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    since = page.get_by_label("Created from", exact=True)
    since.fill(ahead)
    since.press("Enter")
    in_hash = f"since={ahead.replace(':', '%3A')}Z"  # UTC, as the API reads it
    expect(page).to_have_url(re.compile(rf"#/jobs/all\?{re.escape(in_hash)}$"))
    expect(page.get_by_text("No jobs match this filter.")).to_be_visible()
    expect(rows(page)).to_have_count(0)
    page.get_by_label("Created from", exact=True).fill("")
    until = page.get_by_label("Created until", exact=True)
    until.fill(ahead)
    page.get_by_role("button", name="Apply", exact=True).click()
    expect(page).to_have_url(re.compile(r"[?&]until="))
    expect(rows(page)).to_have_count(8)


def check_pages(page: Page, app: System) -> None:
    """Three jobs a page, oldest first: next, next (the last, short), previous, previous."""
    oldest = [item["id"] for item in api_order(app, sort="created")]
    open_list(page, app, "#/jobs/all?sort=created&limit=3")
    number = page.get_by_test_id("page-number")
    previous = page.get_by_role("button", name="Previous page")
    following = page.get_by_role("button", name="Next page")
    expect(number).to_have_text("Page 1")
    expect(rows(page).first).to_have_attribute("data-id", oldest[0])
    assert row_ids(page) == oldest[0:3]
    expect(previous).to_be_disabled()
    following.focus()
    page.keyboard.press("Enter")
    expect(number).to_have_text("Page 2")
    expect(rows(page).first).to_have_attribute("data-id", oldest[3])
    assert row_ids(page) == oldest[3:6]
    following.click()
    expect(number).to_have_text("Page 3")
    expect(rows(page)).to_have_count(2)
    assert row_ids(page) == oldest[6:8]
    expect(following).to_be_disabled()
    previous.click()
    expect(number).to_have_text("Page 2")
    expect(rows(page).first).to_have_attribute("data-id", oldest[3])
    assert row_ids(page) == oldest[3:6]
    previous.click()
    expect(number).to_have_text("Page 1")
    expect(rows(page).first).to_have_attribute("data-id", oldest[0])
    expect(previous).to_be_disabled()


def test_filters_search_sort_and_pages_show_what_the_api_holds(
    system: System,  # noqa: F811
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    errors: list[str] = []
    page = new_page(browser, errors)
    try:
        sign_in(page, system)  # expects an empty queue
        jobs = make_jobs(system)
        open_list(page, system, "#/jobs/all")
        expect(rows(page)).to_have_count(8)
        assert sorted(row_ids(page)) == sorted(jobs.all)
        page.screenshot(path=tmp_path / "job-list-1280.png", full_page=True)
        check_type_filter_and_runs_at(page, system, jobs)
        check_state_filter_and_errors(page, jobs)
        check_search_by_id(page, jobs)
        check_sort(page, system)
        check_time_range(page)
        check_pages(page, system)
        assert errors == []
    finally:
        page.close()


def confirm(page: Page, question: str, button: str) -> None:
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(question)
    dialog.get_by_role("button", name=button, exact=True).click()
    expect(dialog).to_have_count(0)


def result(page: Page) -> Locator:
    return page.get_by_role("region", name="Bulk action result")


def check_bulk_cancel_of_two_selected(page: Page, app: System, jobs: Jobs) -> None:
    """Two rows ticked (one by keyboard) are cancelled after "Cancel 2 jobs?"; the third stays."""
    open_list(page, app, "#/jobs/delayed")
    expect(rows(page)).to_have_count(3)
    first, second, third = jobs.delayed
    page.get_by_label(f"Select job {first}").check()
    box = page.get_by_label(f"Select job {second}")
    box.focus()
    page.keyboard.press("Space")
    expect(box).to_be_checked()
    expect(page.get_by_test_id("selected-count")).to_have_text("2 selected")
    page.get_by_role("button", name="Cancel selected").click()
    confirm(page, "Cancel 2 jobs?", "Cancel 2 jobs")
    expect(result(page)).to_contain_text("2 of 2 job(s) cancelled; 0 skipped.")
    assert [state_of(app, i) for i in (first, second, third)] == [
        "cancelled",
        "cancelled",
        "delayed",
    ]
    expect(rows(page)).to_have_count(1)  # the delayed list re-reads: only the third is left
    assert row_ids(page) == [third]
    expect(page.get_by_test_id("selected-count")).to_have_text("0 selected")


def check_keep_changes_nothing(page: Page, app: System, jobs: Jobs) -> None:
    """The dry run counts; "Keep" in the confirmation leaves every job as it was."""
    page.get_by_role("button", name="Cancel all matching").click()
    confirm(page, "Cancel 1 job?", "Keep")
    assert state_of(app, jobs.delayed[2]) == "delayed"
    expect(rows(page)).to_have_count(1)


def check_bulk_retry_by_filter(page: Page, app: System, jobs: Jobs) -> None:
    """Every failed noop job is retried by filter after "Retry 3 jobs?"; with the queue paused
    they stay pending, each back at its first attempt."""
    paused = call(app, "POST", "/queue/pause")
    assert paused.status_code == 200, paused.text
    open_list(page, app, "#/jobs/failed?type=noop")
    expect(rows(page)).to_have_count(3)
    page.get_by_role("button", name="Retry all matching").click()
    confirm(page, "Retry 3 jobs?", "Retry 3 jobs")
    expect(result(page)).to_contain_text("3 of 3 job(s) queued again; 0 skipped.")
    expect(page.get_by_text("No jobs match this filter.")).to_be_visible()
    for job_id in jobs.failed:
        detail = call(app, "GET", f"/jobs/{job_id}").json()
        assert (detail["status"], detail["attempts_made"]) == ("pending", 0), detail
    for job_id in jobs.completed:
        assert state_of(app, job_id) == "completed"


def check_bulk_delete_reports_skipped(page: Page, app: System, jobs: Jobs) -> None:
    """Deleting a completed and a live (pending) job deletes one and names the other with why."""
    open_list(page, app, "#/jobs/all?type=noop")
    expect(rows(page)).to_have_count(5)
    done, live = jobs.completed[0], jobs.failed[0]
    page.get_by_label(f"Select job {done}").check()
    page.get_by_label(f"Select job {live}").check()
    page.get_by_role("button", name="Delete selected").click()
    confirm(page, "Delete 2 jobs?", "Delete 2 jobs")
    expect(result(page)).to_contain_text("1 of 2 job(s) deleted; 1 skipped.")
    skipped = result(page).get_by_role("list", name="Skipped jobs").get_by_role("listitem")
    expect(skipped).to_have_count(1)
    expect(skipped).to_contain_text(live)
    expect(skipped).to_contain_text("pending")
    assert call(app, "GET", f"/jobs/{done}").status_code == 404
    assert state_of(app, live) == "pending"
    expect(rows(page)).to_have_count(4)


def test_bulk_actions_confirm_the_count_and_change_the_api_state(
    system: System,  # noqa: F811
    browser: Browser,  # noqa: F811
) -> None:
    errors: list[str] = []
    page = new_page(browser, errors)
    try:
        sign_in(page, system)  # expects an empty queue
        jobs = make_jobs(system)
        check_bulk_cancel_of_two_selected(page, system, jobs)
        check_keep_changes_nothing(page, system, jobs)
        check_bulk_retry_by_filter(page, system, jobs)
        check_bulk_delete_reports_skipped(page, system, jobs)
        assert errors == []
    finally:
        page.close()


def test_job_list_fits_a_phone_in_light_and_dark(
    system: System,  # noqa: F811
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    errors: list[str] = []
    page = new_page(browser, errors, width=390)
    try:
        sign_in(page, system)  # expects an empty queue
        jobs = make_jobs(system)
        for scheme, panel in [("light", "rgb(255, 255, 255)"), ("dark", "rgb(27, 33, 43)")]:
            page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
            open_list(page, system, "#/jobs/all")
            expect(rows(page)).to_have_count(8)
            page.get_by_label(f"Select job {jobs.failed[0]}").check()
            expect(cell(page, jobs.failed[0], "Error")).to_be_visible()
            expect(cell(page, jobs.failed[0], "Error")).to_contain_text(FAILED_ERROR)
            expect(cell(page, jobs.delayed[0], "Runs at")).to_be_visible()
            page.screenshot(path=tmp_path / f"job-list-{scheme}-390.png", full_page=True)
            found = page.evaluate(OFF_SCREEN)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390, found
            assert not found["off"], (scheme, found)
            background = rows(page).first.evaluate("(row) => getComputedStyle(row).backgroundColor")
            assert background == panel, scheme  # each row is a card in the scheme's panel colour
        assert errors == []
    finally:
        page.close()
