"""docs/example-usage.md works as written: every `sh` and `python` block runs against a real
API server and a real worker, with the URL and key in the environment as the page says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
from api_harness import API_KEY, BIN, ROOT, api_server, delete_queue_sync, unique_queue, worker

pytestmark = pytest.mark.slow

DOC = ROOT / "docs" / "example-usage.md"
BLOCK = re.compile(r"^```(sh|python)\n(.*?)^```", re.MULTILINE | re.DOTALL)
BLOCKS = BLOCK.findall(DOC.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def stack(redis_url: str) -> Iterator[dict[str, str]]:
    """API + worker on a fresh queue; yields the environment the examples run in (with the
    queue's Redis settings too, for the page's taskiq producer)."""
    queue = unique_queue()
    try:
        with api_server(redis_url, queue) as base, worker(redis_url, queue):
            yield {
                **os.environ,
                "JOBQUEUE_URL": base,
                "JOBQUEUE_API_KEY": API_KEY,
                "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                # What a worker's own settings hold, for the examples that use the taskiq
                # broker from Python (flows' FlowStep, a group label on kiq()) rather than the
                # HTTP API.
                "REDIS_URL": redis_url,
                "QUEUE_NAME": queue,
                "KEY_PREFIX": "jqtest",
            }
    finally:
        delete_queue_sync(redis_url, queue)


def test_the_page_has_curl_python_and_cli_examples() -> None:
    languages = [language for language, _ in BLOCKS]
    assert "python" in languages
    assert any("curl" in code for _, code in BLOCKS)
    assert any("jobqueue " in code for _, code in BLOCKS)


@pytest.mark.parametrize(
    ("language", "code"), BLOCKS, ids=[f"{i}-{lang}" for i, (lang, _) in enumerate(BLOCKS)]
)
def test_example_block_runs(stack: dict[str, str], language: str, code: str) -> None:
    if language == "sh":
        argv = ["bash", "-euo", "pipefail", "-c", code]
    else:
        argv = [sys.executable, "-c", code]
    result = subprocess.run(
        argv, env=stack, cwd=ROOT, capture_output=True, text=True, timeout=90, check=False
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
