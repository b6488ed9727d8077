"""The schedules page in a real browser against a real API, worker and Redis.

Schedules are created through the API; the page must show each one's type, cadence and next run
as the API reports them, and its pause, resume, trigger and delete buttons must change what the
API reports. The layout of a populated page is checked at desktop and phone widths, light and dark.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.ui.test_ui_browser import System, browser, sign_in, system  # noqa: F401 (fixtures)
from tests.ui.test_ui_layout import WIDTHS, check_layout

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

EVERY_ID = "hourly-noop"
CRON_ID = "nightly-mail"
SCHEDULES: dict[str, dict[str, Any]] = {
    EVERY_ID: {"type": "noop", "data": {"sleep_seconds": 0}, "every_seconds": 3600},
    CRON_ID: {
        "type": "email-sending",
        "data": {"to": ["ops@example.com"], "subject": "Nightly", "text": "Report attached."},
        "cron": "0 3 * * *",
        "timezone": "Europe/Berlin",
    },
}
# The page shows times in the browser's zone; pinned so the test knows what text to expect.
BROWSER_TIMEZONE = "UTC"
PHONE_WIDTH = min(WIDTHS)
# A triggered noop run goes pending -> processing -> completed on the test's one worker.
RUN_SECONDS = 20_000


def call(running: System, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"X-API-Key": running.api_key}
    return httpx.request(method, f"{running.base_url}{path}", headers=headers, timeout=10, **kwargs)


def schedule(running: System, schedule_id: str) -> dict[str, Any]:
    response = call(running, "GET", f"/schedules/{schedule_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def row(page: Page, schedule_id: str) -> Locator:
    """The table row whose header cell is the schedule's id."""
    header = page.get_by_role("rowheader", name=schedule_id, exact=True)
    return page.get_by_role("row").filter(has=header)


def shown_time(iso: str) -> str:
    """A time as the page's fmtTime shows it in BROWSER_TIMEZONE."""
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def empty_page_says_so(page: Page) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Schedules").click()
    expect(page.get_by_role("heading", name="Schedules", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Schedules")).to_have_attribute("aria-current", "page")
    expect(page.get_by_test_id("schedules-empty")).to_contain_text("No schedules yet.")
    expect(page.get_by_role("table")).to_have_count(0)


def create_schedules(running: System) -> None:
    for schedule_id, spec in SCHEDULES.items():
        response = call(running, "PUT", f"/schedules/{schedule_id}", json=spec)
        assert response.status_code == 201, response.text


def rows_show_type_cadence_and_next_run(page: Page, running: System) -> None:
    """Both rows appear without a reload, each as the API describes it."""
    expect(page.get_by_role("row")).to_have_count(3)  # header + the two schedules
    every, cron = row(page, EVERY_ID), row(page, CRON_ID)
    expect(every.get_by_role("cell").nth(0)).to_have_text("noop")
    expect(every.get_by_role("cell").nth(1)).to_have_text("every 3600 s (1 h)")
    expect(cron.get_by_role("cell").nth(0)).to_have_text("email-sending")
    expect(cron.get_by_role("cell").nth(1)).to_have_text("0 3 * * * Europe/Berlin")
    for schedule_id, shown in [(EVERY_ID, every), (CRON_ID, cron)]:
        next_run = schedule(running, schedule_id)["next_run_at"]
        assert next_run is not None
        expect(shown.get_by_test_id("schedule-next")).to_have_text(shown_time(next_run))
        expect(shown.get_by_test_id("schedule-next")).to_have_attribute("datetime", next_run)
        expect(shown.get_by_test_id("schedule-state")).to_have_text("running")
        expect(shown.get_by_role("cell").nth(4)).to_have_text("never")  # Last run
    expect(every.get_by_role("link", name="noop")).to_have_attribute("href", "#/types/noop")


def pause_by_keyboard_then_resume(page: Page, running: System) -> None:
    """Enter on Pause pauses it in the API; the focus stays on the toggle, now Resume."""
    every = row(page, EVERY_ID)
    every.get_by_role("button", name=f"Pause {EVERY_ID}").focus()
    page.keyboard.press("Enter")
    expect(every.get_by_test_id("schedule-state")).to_have_text("paused")
    expect(every.get_by_role("cell").nth(2)).to_have_text("— (paused)")  # Next run
    resume = every.get_by_role("button", name=f"Resume {EVERY_ID}")
    expect(resume).to_be_focused()
    paused = schedule(running, EVERY_ID)
    assert (paused["paused"], paused["next_run_at"]) == (True, None)
    assert schedule(running, CRON_ID)["paused"] is False  # only the one it was pressed for

    resume.click()
    expect(every.get_by_test_id("schedule-state")).to_have_text("running")
    resumed = schedule(running, EVERY_ID)
    assert resumed["paused"] is False and resumed["next_run_at"] is not None
    expect(every.get_by_test_id("schedule-next")).to_have_text(shown_time(resumed["next_run_at"]))


def trigger_runs_a_job_linked_from_the_row(page: Page, running: System) -> None:
    """Trigger enqueues one job now; the row's last run links to it and follows its state."""
    every = row(page, EVERY_ID)
    every.get_by_role("button", name=f"Trigger {EVERY_ID}").click()
    expect(page.get_by_role("status")).to_contain_text(f"Schedule {EVERY_ID} triggered: job ")
    runs = schedule(running, EVERY_ID)["last_runs"]
    assert len(runs) == 1, runs
    job_id = runs[0]["job_id"]
    job = call(running, "GET", f"/jobs/{job_id}")
    assert job.status_code == 200, job.text
    assert job.json()["type"] == "noop"

    link = every.get_by_test_id("schedule-last-run")
    expect(link).to_have_attribute("href", f"#/job/{quote(job_id, safe='')}")
    expect(link).to_have_attribute("title", job_id)
    expect(link).to_have_text(job_id.removeprefix(f"{EVERY_ID}:"))  # the row names the schedule
    expect(every.get_by_role("cell").nth(4)).to_contain_text("completed", timeout=RUN_SECONDS)
    expect(row(page, CRON_ID).get_by_role("cell").nth(4)).to_have_text("never")
    link.click()
    expect(page.get_by_role("heading", name=f"Job {job_id}")).to_be_visible()
    expect(page.get_by_test_id("job-status")).to_have_text("completed")
    page.go_back()
    back_link = row(page, EVERY_ID).get_by_test_id("schedule-last-run")
    expect(back_link).to_have_attribute("title", job_id)


def delete_asks_first(page: Page, running: System) -> None:
    """Keep leaves the schedule alone; Delete schedule removes it from the page and the API."""
    every = row(page, EVERY_ID)
    every.get_by_role("button", name=f"Delete {EVERY_ID}").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Delete schedule {EVERY_ID}?")
    dialog.get_by_role("button", name="Keep").click()
    expect(dialog).to_have_count(0)
    expect(every).to_have_count(1)
    assert call(running, "GET", f"/schedules/{EVERY_ID}").status_code == 200

    every.get_by_role("button", name=f"Delete {EVERY_ID}").click()
    dialog.get_by_role("button", name="Delete schedule").click()
    expect(every).to_have_count(0)
    expect(row(page, CRON_ID)).to_have_count(1)
    assert call(running, "GET", f"/schedules/{EVERY_ID}").status_code == 404
    assert [s["id"] for s in call(running, "GET", "/schedules").json()] == [CRON_ID]

    row(page, CRON_ID).get_by_role("button", name=f"Delete {CRON_ID}").click()
    dialog.get_by_role("button", name="Delete schedule").click()
    expect(page.get_by_test_id("schedules-empty")).to_be_visible()
    assert call(running, "GET", f"/schedules/{CRON_ID}").status_code == 404


def populated_page_fits(page: Page, shots: Path) -> None:
    """Rows with their buttons fit a phone and a desktop, light and dark."""
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
        check_layout(page, shots, f"schedules-{scheme}")  # ends at the phone width
        # check_layout lets a table overflow its own scrolling box; the buttons must not.
        for schedule_id in SCHEDULES:
            box = page.get_by_role("button", name=f"Delete {schedule_id}").bounding_box()
            assert box is not None and box["x"] + box["width"] <= PHONE_WIDTH, (scheme, box)
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_operator_sees_and_steers_schedules(
    system: System,  # noqa: F811
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900}, timezone_id=BROWSER_TIMEZONE)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    expect.set_options(timeout=10_000)
    try:
        sign_in(page, system)
        empty_page_says_so(page)
        create_schedules(system)
        rows_show_type_cadence_and_next_run(page, system)
        populated_page_fits(page, tmp_path)
        pause_by_keyboard_then_resume(page, system)
        trigger_runs_a_job_linked_from_the_row(page, system)
        page.screenshot(path=tmp_path / "schedules-after-a-run.png", full_page=True)
        delete_asks_first(page, system)
    except Exception:
        page.screenshot(path=tmp_path / "schedules-failure.png", full_page=True)
        raise
    finally:
        page.close()
    assert errors == []
