"""Every dashboard page at desktop (1280 px) and phone (390 px) widths, in light and dark
colour schemes: screenshots under the test's tmp dir, and checks that nothing breaks the
layout (the page never scrolls sideways, no visible element sits off-screen to the right).

Also drives the new controls by keyboard and pointer: the history range buttons and the
queue's and a type's pause and resume."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.ui.test_ui_browser import System, browser, sign_in, system  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

WIDTHS = (1280, 390)
# Elements inside a box that scrolls sideways on its own (a wide table) may extend past the
# viewport: they are reached by scrolling that box, not the page.
OFF_SCREEN = """() => {
  const width = document.documentElement.clientWidth;
  const scrollsAlone = (el) => {
    for (let p = el.parentElement; p; p = p.parentElement) {
      const overflow = getComputedStyle(p).overflowX;
      if (overflow === "auto" || overflow === "scroll" || overflow === "hidden") return true;
    }
    return false;
  };
  const off = [];
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if (!box.width || !box.height || getComputedStyle(el).visibility === "hidden") continue;
    if (box.right > width + 1 && !scrollsAlone(el)) {
      off.push(`${el.tagName.toLowerCase()}.${el.className}`);
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, width, off: off.slice(0, 10)};
}"""


def check_layout(page: Page, shots: Path, name: str) -> None:
    page.wait_for_timeout(500)  # the live views never go network-idle (SSE): let them draw
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(200)  # let the layout settle after the resize
        page.screenshot(path=shots / f"{name}-{width}.png", full_page=True)
        found = page.evaluate(OFF_SCREEN)
        assert found["scrollWidth"] <= found["width"], (name, width, found)
        assert not found["off"], (name, width, found)


def enqueue(running: System, job_type: str = "noop", **data: object) -> str:
    response = httpx.post(
        f"{running.base_url}/{job_type}/enqueue",
        headers={"X-API-Key": running.api_key},
        json={"data": data},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_fits_desktop_and_phone(
    system: System,  # noqa: F811
    browser: Browser,  # noqa: F811
    tmp_path: Path,
    scheme: str,
) -> None:
    page = browser.new_page(color_scheme=scheme)  # type: ignore[arg-type]
    try:
        sign_in(page, system)  # expects an empty queue
        job_id = enqueue(system, sleep_seconds=0)
        check_layout(page, tmp_path, f"{scheme}-overview")
        for path, name in [
            (f"#/job/{job_id}", "job"),
            ("#/jobs/completed", "list-completed"),
            ("#/jobs/failed", "list-failed"),
            ("#/types/noop", "list-type"),
            ("#/enqueue", "enqueue"),
            ("#/schedules", "schedules"),
        ]:
            page.goto(f"{system.base_url}/ui{path}")
            expect(page.locator("main h1").first).to_be_visible()
            check_layout(page, tmp_path, f"{scheme}-{name}")
    finally:
        page.close()


def test_history_ranges_and_pause_controls(system: System, browser: Browser) -> None:  # noqa: F811
    page = browser.new_page()
    headers = {"X-API-Key": system.api_key}
    try:
        sign_in(page, system)  # expects an empty queue
        enqueue(system, sleep_seconds=0)
        ranges = page.get_by_role("group", name="History range")
        for label, bars in [("7d", 168), ("1h", 60), ("24h", 24)]:
            button = ranges.get_by_role("button", name=label, exact=True)
            button.focus()
            page.keyboard.press("Enter")  # reachable and usable by keyboard
            expect(button).to_have_attribute("aria-pressed", "true")
            completed_chart = page.locator("section[aria-labelledby=h-history] svg.chart.ok")
            expect(completed_chart.locator("rect.bar")).to_have_count(bars)

        page.get_by_test_id("queue-flow").click()
        page.get_by_role("button", name="Pause queue").last.click()  # the confirmation
        expect(page.get_by_test_id("queue-state")).to_have_text("Queue paused")
        stats = httpx.get(f"{system.base_url}/jobs/stats", headers=headers, timeout=10).json()
        assert stats["paused"] is True
        page.get_by_role("button", name="Resume queue").click()
        expect(page.get_by_test_id("queue-state")).to_have_text("Queue running")

        page.get_by_role("button", name="Pause noop").click()
        expect(page.get_by_role("button", name="Resume noop")).to_be_visible()
        stats = httpx.get(f"{system.base_url}/jobs/stats", headers=headers, timeout=10).json()
        assert stats["paused_types"] == ["noop"]
        page.get_by_role("button", name="Resume noop").click()
        expect(page.get_by_role("button", name="Pause noop")).to_be_visible()
        stats = httpx.get(f"{system.base_url}/jobs/stats", headers=headers, timeout=10).json()
        assert stats["paused"] is False and stats["paused_types"] == []
    finally:
        page.close()
