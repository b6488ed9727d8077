"""The dashboard's job page in a real browser against a real system: a failed job's error,
traceback and timeline, and copy-as-curl, whose command (run with bash) enqueues the same job
again. With the Clipboard API and without it (the command is then selected in a field)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.ui.test_ui_browser import System, browser, sign_in, system  # noqa: F401 (fixtures)
from tests.ui.test_ui_layout import check_layout

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

JOB_SECONDS = 30.0
# What a re-enqueue must carry over from the job detail (besides type and data).
OPTIONS = ("priority", "max_attempts", "backoff", "timeout_seconds")
# A subject a naive `'...'` quoting or a double-quoted one would break or expand.
AWKWARD = "it's \"$HOME\" `id` $(echo no) \\ 100% o'clock"


def api(running: System, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(
        method,
        f"{running.base_url}{path}",
        headers={"X-API-Key": running.api_key},
        timeout=10,
        **kwargs,
    )
    assert response.is_success, response.text
    return response.json()


def wait_for_status(running: System, job_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_SECONDS
    while time.monotonic() < deadline:
        job: dict[str, Any] = api(running, "GET", f"/jobs/{job_id}")
        if job["status"] == status:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not {status} within {JOB_SECONDS} s")


def run_curl(running: System, command: str) -> dict[str, Any]:
    """Run the copied command as an operator would, with the two variables it names set."""
    env = {
        "PATH": "/usr/bin:/bin",
        "JOBQUEUE_URL": running.base_url,
        "JOBQUEUE_API_KEY": running.api_key,
    }
    done = subprocess.run(
        ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def assert_same_job(running: System, original: dict[str, Any], enqueued: dict[str, Any]) -> None:
    assert enqueued["id"] != original["id"] and enqueued["created"] is True, enqueued
    again = api(running, "GET", f"/jobs/{enqueued['id']}")
    assert (again["type"], again["data"]) == (original["type"], original["data"])
    assert {key: again[key] for key in OPTIONS} == {key: original[key] for key in OPTIONS}


def test_a_failed_job_shows_its_traceback_timeline_and_copies_as_curl(
    system: System,  # noqa: F811
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    body = {
        "type": "noop",
        "data": {"fail_first_attempts": 2},
        "attempts": 2,
        "priority": "high",
        "backoff": {"type": "fixed", "delay_seconds": 0, "jitter": 0},
        "timeout_seconds": 30,
    }
    job_id = api(system, "POST", "/jobs/enqueue", json=body)["id"]
    job = wait_for_status(system, job_id, "failed")
    states = [entry["status"] for entry in job["timeline"]]
    assert states[0] == "pending" and states.count("processing") == 2 and states[-1] == "failed"

    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    try:
        sign_in(page, system)
        page.goto(f"{system.base_url}/ui#/job/{job_id}")
        expect(page.get_by_test_id("job-status")).to_have_text("failed")
        expect(page.get_by_test_id("job-error")).to_have_text(
            "RuntimeError: noop fails its first 2 attempt(s); this is 2"
        )
        trace = page.get_by_test_id("job-traceback")
        expect(trace).to_contain_text("Traceback (most recent call last)")
        expect(trace).to_contain_text('noop.py", line')
        assert trace.evaluate("el => getComputedStyle(el).whiteSpace") == "pre"  # lines kept

        timeline = page.get_by_role("list", name="State changes").get_by_role("listitem")
        expect(timeline).to_have_count(len(states))
        assert [item.locator(".badge").inner_text() for item in timeline.all()] == states

        copy = page.get_by_role("button", name="Copy as curl")
        copy.focus()
        page.keyboard.press("Enter")
        expect(page.get_by_test_id("curl-status")).to_contain_text("Copied")
        command: str = page.evaluate("navigator.clipboard.readText()")
        assert system.api_key not in command and "$JOBQUEUE_API_KEY" in command
        assert_same_job(system, job, run_curl(system, command))

        check_layout(page, tmp_path, "job-failed")
        page.set_viewport_size({"width": 390, "height": 900})
        # On a phone the trace scrolls inside its own box, not the page.
        assert trace.evaluate("el => el.scrollWidth > el.clientWidth")
        assert trace.evaluate("el => getComputedStyle(el).overflowX") == "auto"
    finally:
        context.close()


def test_without_the_clipboard_api_the_command_is_selected_in_a_field(
    system: System,  # noqa: F811
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    # Paused, so the email job is never sent: it only has to exist, with awkward text in it.
    api(system, "POST", "/jobs/types/email-sending/pause")
    data = {"to": ["ops@example.com"], "subject": AWKWARD, "text": "line one\nline 'two'"}
    job_id = api(system, "POST", "/jobs/enqueue", json={"type": "email-sending", "data": data})[
        "id"
    ]
    job = api(system, "GET", f"/jobs/{job_id}")

    page: Page = browser.new_page()
    page.add_init_script("Object.defineProperty(navigator, 'clipboard', { value: undefined })")
    try:
        sign_in(page, system)
        page.goto(f"{system.base_url}/ui#/job/{job_id}")
        expect(page.get_by_test_id("job-status")).to_have_text("pending")
        page.get_by_role("button", name="Copy as curl").click()

        field = page.get_by_label("curl command")
        expect(field).to_be_focused()
        expect(field).to_have_attribute("readonly", "")
        expect(page.get_by_test_id("curl-status")).to_contain_text("Ctrl+C")
        command = field.input_value()
        selected = field.evaluate("el => [el.selectionStart, el.selectionEnd]")
        assert selected == [0, len(command)]
        enqueued = run_curl(system, command)
        assert_same_job(system, job, enqueued)
        assert api(system, "GET", f"/jobs/{enqueued['id']}")["data"]["subject"] == AWKWARD

        check_layout(page, tmp_path, "job-curl-field")
    finally:
        page.close()


def test_a_flow_parent_shows_its_children_and_a_child_links_its_parent(
    system: System,  # noqa: F811
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    page = browser.new_page()
    sign_in(page, system)  # before any job completes: it checks the overview's zero count
    flow = api(
        system,
        "POST",
        "/flows",
        json={
            "type": "noop",
            "on_child_failure": "ignore",
            "children": [
                {"type": "noop"},
                {"type": "noop", "data": {"fail_first_attempts": 1}, "options": {"attempts": 1}},
                {"type": "noop", "options": {"delay_seconds": 3600}},
            ],
        },
    )
    root = flow["root"]["id"]
    done, failing, waiting = (child["id"] for child in flow["root"]["children"])
    wait_for_status(system, failing, "failed")
    wait_for_status(system, done, "completed")
    try:
        page.goto(f"{system.base_url}/ui#/job/{root}")
        expect(page.get_by_test_id("job-status")).to_have_text("waiting-children")
        expect(page.get_by_test_id("job-waiting-for")).to_have_text("1 of 3 children")
        children = page.get_by_test_id("job-children").get_by_role("listitem")
        expect(children).to_have_count(3)
        badges = [item.locator(".badge").inner_text() for item in children.all()]
        assert badges == ["completed", "failed", "delayed"]
        expect(children.nth(1)).to_contain_text("fails its first 1 attempt")
        check_layout(page, tmp_path, "job-flow-parent")  # 1280 px and 390 px
        page.set_viewport_size({"width": 1280, "height": 900})
        children.nth(2).get_by_role("link").click()
        expect(page.get_by_test_id("job-status")).to_have_text("delayed")
        assert waiting in page.url
        page.get_by_test_id("job-parent").get_by_role("link").click()
        expect(page.get_by_test_id("job-status")).to_have_text("waiting-children")
        page.get_by_role("button", name="Cancel job").click()
        page.get_by_role("dialog").get_by_role("button", name="Cancel job").click()
        expect(page.get_by_test_id("job-status")).to_have_text("cancelled")
        assert api(system, "GET", f"/jobs/{waiting}")["status"] == "cancelled"
    finally:
        page.close()
