"""The dashboard's routes without a browser: what is served, with which headers, to whom.

Also guards the static files themselves: no inline script (the CSP would block it), no asset
from another host (machines may be offline), no HTML built from strings (job data is untrusted).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from service.api.app import create_app
from service.api.errors import install_error_handlers
from service.api.ui.events import queue_event_stream
from service.api.ui.routes import STATIC_DIR, etag_for, router
from service.queue.models import JobSpec
from service.queue.queue import JobQueue
from service.settings import Settings

KEY = "ui-routes-test-key"


@pytest.fixture
async def client(queue: JobQueue) -> AsyncIterator[httpx.AsyncClient]:
    """The dashboard router alone, on the test queue, with one API key."""
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    app.state.queue = queue
    app.state.api_keys = [KEY.encode()]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ui.test") as http:
        yield http


async def test_the_app_factory_mounts_the_dashboard(redis_url: str) -> None:
    app = create_app(Settings(api_keys=KEY, environment="test", redis_url=redis_url))
    transport = httpx.ASGITransport(app=app)  # no lifespan: the page needs no Redis
    async with httpx.AsyncClient(transport=transport, base_url="http://ui.test") as http:
        assert (await http.get("/ui")).status_code == 200
        assert (await http.get("/ui/static/app.css")).status_code == 200
    assert "/ui/api/throughput" in app.openapi()["paths"]


async def test_page_is_public_and_locked_down(client: httpx.AsyncClient) -> None:
    response = await client.get("/ui")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-cache"
    assert KEY not in response.text


async def test_unchanged_files_revalidate_with_304(client: httpx.AsyncClient) -> None:
    first = await client.get("/ui/static/app.js")
    assert first.status_code == 200
    assert first.headers["content-type"] == "text/javascript; charset=utf-8"
    again = await client.get("/ui/static/app.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


def test_etag_follows_content_even_when_size_and_mtime_do_not_change(tmp_path: Path) -> None:
    # Reproducible wheels give every file the same mtime; an edit may keep the size.
    path = tmp_path / "app.js"
    path.write_text("const a = 1;")
    os.utime(path, ns=(0, 0))
    before = etag_for(path)
    path.write_text("const a = 2;")
    os.utime(path, ns=(0, 0))
    assert etag_for(path) != before
    assert etag_for(path) == etag_for(path)


async def test_slash_redirects_to_the_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/ui/")
    assert response.status_code == 308
    assert response.headers["location"] == "/ui"


@pytest.mark.parametrize(
    "path",
    [
        "/ui/static/../routes.py",
        "/ui/static/%2e%2e/routes.py",
        "/ui/static/nope.js",
        "/ui/static/",
        # Names the file system refuses are missing files too: a NUL byte was a 500, a name
        # too long (OSError) was reported as "Redis unreachable" (503).
        "/ui/static/%00",
        "/ui/static/app%00.js",
        "/ui/static/" + "a" * 5000,
    ],
)
async def test_nothing_outside_the_static_folder_is_served(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "import" not in response.text


async def test_throughput_needs_the_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/ui/api/throughput")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


async def test_throughput_lists_every_minute_of_the_window(client: httpx.AsyncClient) -> None:
    response = await client.get("/ui/api/throughput", headers={"X-API-Key": KEY})
    assert response.status_code == 200
    minutes = response.json()["minutes"]
    assert len(minutes) == 60
    numbers = [m["minute"] for m in minutes]
    assert numbers == list(range(numbers[0], numbers[0] + 60))
    assert numbers[-1] in {int(time.time() // 60) - 1, int(time.time() // 60)}
    assert all(m.keys() == {"minute", "completed", "failed", "retried"} for m in minutes)
    assert all(m["completed"] == m["failed"] == m["retried"] == 0 for m in minutes)


@pytest.mark.parametrize("minutes", [0, 121, "x"])
async def test_throughput_rejects_windows_it_cannot_answer(
    client: httpx.AsyncClient, minutes: object
) -> None:
    response = await client.get(
        "/ui/api/throughput",
        params={"minutes": minutes},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"]["errors"][0]["field"] == "minutes"


def static_files(suffix: str) -> list[Path]:
    return sorted(STATIC_DIR.rglob(f"*{suffix}"))


def test_page_has_no_inline_script_or_style() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    assert re.findall(r"<script\b[^>]*>", html) == [
        '<script type="module" src="/ui/static/app.js">'
    ]
    assert "<style" not in html
    assert " style=" not in html
    assert " on" not in re.sub(r"<(noscript|title)>.*?</\1>", "", html)  # no onclick= etc.


def test_every_asset_comes_from_the_app() -> None:
    for path in [*static_files(".js"), *static_files(".css"), *static_files(".html")]:
        text = path.read_text()
        # The SVG namespace is a name, not a download.
        text = text.replace('"http://www.w3.org/2000/svg"', "")
        external = re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text)
        assert external == [], f"{path.name} refers to {external}"


def test_scripts_never_build_html_from_strings() -> None:
    for path in static_files(".js"):
        code = "\n".join(
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("//")
        )
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in code, f"{path.name} uses {sink}"


def test_every_module_import_resolves_to_a_shipped_file() -> None:
    for path in static_files(".js"):
        for target in re.findall(r'from "(\.{1,2}/[^"]+)"', path.read_text()):
            assert (path.parent / target).resolve().is_file(), f"{path.name} imports {target}"


async def test_change_stream_says_ready_then_coalesces_a_burst(queue: JobQueue) -> None:
    stream = queue_event_stream(queue, max_seconds=5)
    try:
        ready = await anext(stream)
        assert ready.event == "ready"
        # Ten enqueues and two cancels in one burst arrive as a single coalesced event.
        results = await queue.enqueue_many([JobSpec(type="noop") for _ in range(10)])
        for result in results[:2]:
            await queue.cancel(result.job.id)
        event = await asyncio.wait_for(anext(stream), timeout=5)
        assert event.event == "changes"
        assert json.loads(event.data) == {
            "changes": 12,
            "by_status": {"pending": 10, "cancelled": 2},
        }
    finally:
        await stream.aclose()


async def test_change_stream_ends_at_its_deadline(queue: JobQueue) -> None:
    stream = queue_event_stream(queue, max_seconds=0.2)
    events = [event.event async for event in stream]
    assert events == ["ready"]


async def test_change_stream_needs_the_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/ui/api/events")
    assert response.status_code == 401
