"""/docs and /redoc work without the internet: every script, style and icon they load comes
from this server, and it serves them. Also: no access line per request unless ACCESS_LOG."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_harness import BIN, ROOT, api_server, free_port, service_env, stop_process, wait_ready

pytestmark = pytest.mark.slow

ASSET_REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\(\s*['"]?([^'")]+)""")
MAX_FAVICON_BYTES = 100_000


@pytest.fixture(scope="module")
def base(redis_url: str) -> Iterator[str]:
    with api_server(redis_url, "docs-offline") as url:
        yield url


def references(html: str) -> list[str]:
    found = [a or b for a, b in ASSET_REFERENCE.findall(html)]
    return [ref for ref in found if not ref.startswith("data:")]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_only_local_assets_and_they_are_served(base: str, page: str) -> None:
    html = httpx.get(base + page, timeout=10)
    assert html.status_code == 200
    assert "cdn" not in html.text.lower() and "fonts.googleapis" not in html.text
    refs = references(html.text)
    scripts = [ref for ref in refs if ref.endswith(".js")]
    assert scripts, html.text
    for ref in refs:
        assert ref.startswith("/") and not ref.startswith("//"), ref
        asset = httpx.get(base + ref, timeout=10)
        assert asset.status_code == 200, ref
        assert len(asset.content) > (MAX_FAVICON_BYTES if ref in scripts else 100), ref
    assert httpx.get(base + "/openapi.json", timeout=10).json()["info"]["title"] == "jobqueue"


def test_no_access_line_per_request_by_default(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "jobqueue"), "api", "--port", str(port)],
            env=service_env(redis_url, "docs-offline"), cwd=ROOT,
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)
        for _ in range(3):
            httpx.get(f"http://127.0.0.1:{port}/healthz?probe=quiet", timeout=10)
    finally:
        stop_process(process)
    text = log_path.read_text()
    assert "Application startup complete" in text  # the server's own lines still are there
    assert "probe=quiet" not in text and "GET /" not in text
