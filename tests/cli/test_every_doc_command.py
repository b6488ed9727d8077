"""Every shell and Python block of the user docs is run by some test, or skipped here for a
stated reason: a block that is in neither list fails `test_every_block_is_run_or_skipped`, so a
command added to the docs cannot go untested by accident.

The blocks no other test runs are run here, as written, against a real API and worker in a
scratch directory (the docs' `.jobqueue/`, `downloads/` and `out/` land there): `uv run` is
dropped (the test's own environment has the package), `<job id>` becomes the id of the last
job a previous line printed, and `JOBQUEUE_API_KEY=...` the test key.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from api_harness import API_KEY, BIN, ROOT, delete_queue_sync, service_env, unique_queue, wait_ready
from api_harness import free_port as api_port

pytestmark = pytest.mark.slow

DOCS = ("README.md", "docs/example-usage.md", "docs/dashboard.md", "docs/job-types.md",
        "docs/queue.md", "docs/metrics.md", "docs/migrating-from-taskiq-redis.md")  # fmt: skip
RUNNABLE = ("sh", "bash", "console", "")


@dataclass(frozen=True)
class Block:
    """One fenced block: its file, line and language, and its text."""

    doc: str
    line: int
    language: str
    code: str

    @property
    def first(self) -> str:
        return self.code.splitlines()[0].removeprefix("$ ")

    def __str__(self) -> str:
        return f"{self.doc}:{self.line} ({self.language or 'plain'}) {self.first!r}"


def blocks() -> list[Block]:
    """Every fenced block of the docs, opening and closing fences paired line by line."""
    found = []
    for doc in DOCS:
        lines = (ROOT / doc).read_text(encoding="utf-8").splitlines()
        opened: tuple[int, str] | None = None
        body: list[str] = []
        for number, line in enumerate(lines, start=1):
            if not line.startswith("```"):
                body.append(line)
            elif opened is None:
                opened, body = (number, line[3:].strip()), []
            else:
                found.append(Block(doc, opened[0], opened[1], "\n".join(body) + "\n"))
                opened = None
    return [b for b in found if b.language in (*RUNNABLE, "python")]


# Blocks other tests run, by (doc, language): the test that runs them.
RUN_ELSEWHERE = {
    ("docs/example-usage.md", "sh"): "tests/api/test_example_usage.py (every sh block)",
    ("docs/example-usage.md", "python"): "tests/api/test_example_usage.py (every python block)",
    ("README.md", "python"): "tests/cli/test_readme_snippet.py (against `jobqueue run`)",
    ("docs/job-types.md", "python"): "tests/jobs/test_job_types_docs.py (the example module, "
    "word for word) and tests/jobs/test_job_workers.py (run in real workers)",
    ("docs/migrating-from-taskiq-redis.md", "python"): "this file, "
    "test_the_schedules_from_python_block_runs",
}
# Blocks no test can run as written, by their first line: why.
SKIPPED = {
    "make run    # runs everything locally: embedded Valkey, API + dashboard, workers, metrics "
    "loop": "`make run` is a foreground server (tests/cli/test_supervisor.py and "
    "test_readme_snippet.py run `jobqueue run`, which it starts); `make test` is this suite",
    "make lint typecheck   # ruff (broad rule set) and mypy --strict on service/ and infra/": "the "
    "suite itself and its linters (CI runs these targets); `make bench` takes minutes",
    "REDIS_URL=redis://127.0.0.1:6379/0 uv run pytest tests/ui -q": "runs the browser tests, "
    "which are part of this suite",
    "uv run jobqueue run": "the `jobqueue run` banner (console); tests/cli/test_supervisor.py "
    "checks it line by line",
    "export JOBQUEUE_URL=http://127.0.0.1:8000": "exports for a shell beside `jobqueue run`; "
    "every runnable block here gets them from the test",
    "jobqueue api --host 0.0.0.0 --port 8000   # needs API_KEYS or API_KEYS_FILE, and REDIS_URL": (
        "long-running servers; the tests start `jobqueue api` and `jobqueue worker` themselves "
        "(tests/api/api_harness.py), and `metrics --once` in tests/images/test_entrypoints.py"
    ),
    "JOB_MODULES=myteam.jobs.word_count,myteam.jobs.invoices jobqueue worker": "names your "
    "own modules (myteam.* does not exist); tests/jobs/test_job_workers.py loads docs/examples "
    "this way",
    "jobqueue import-taskiq-redis --from redis://old-host:6379/0 --list taskiq --dry-run": "needs "
    "a taskiq-redis deployment at old-host; tests/migration/test_import_taskiq_redis.py runs each "
    "form against a server holding taskiq-redis messages",
}
# Blocks this file runs (test_block_runs), by their first line.
RUN_HERE = {
    "export JOBQUEUE_API_KEY=...   # printed by `make run`",
    "uv run jobqueue schedules add nightly noop --cron '0 2 * * *' --timezone Europe/Berlin",
    "uv run jobqueue list --state failed --type email-sending --since 2026-12-01T00:00Z --limit 20",
    'curl -H "X-API-Key: $JOBQUEUE_API_KEY" "$JOBQUEUE_URL/jobs/$ID/artifacts"',
    "mkdir -p .jobqueue/artifacts/uploads",
    'ID=$(uv run jobqueue enqueue data-processing --data \'{"dataset": {"csv": '
    '"region,units\\nnorth,10\\nsouth,7\\nnorth,5\\n"}, "group_by": ["region"], '
    '"aggregates": [{"op": "sum", "field": "units", "as": "units"}]}\' | id_of)',
}


def shell_blocks() -> list[Block]:
    return [b for b in blocks() if b.language in RUNNABLE]


def test_every_block_is_run_or_skipped() -> None:
    unmarked = [
        str(b)
        for b in blocks()
        if (b.doc, b.language) not in RUN_ELSEWHERE
        and b.first not in SKIPPED
        and b.first not in RUN_HERE
    ]
    assert not unmarked, "run these doc blocks in a test, or skip them here with a reason"
    firsts = {b.first for b in blocks()}
    stale = [first for first in [*SKIPPED, *RUN_HERE] if first not in firsts]
    assert not stale, f"no doc has these blocks any more: {stale}"


@pytest.fixture(scope="module")
def system(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """API and worker on a fresh queue, both in a scratch directory; yields the shell's env."""
    here = tmp_path_factory.mktemp("docs")
    queue = unique_queue()
    env = service_env(redis_url, queue, DATA_DIR=str(here / ".jobqueue"))
    port = api_port()
    api = subprocess.Popen(
        [str(BIN / "jobqueue"), "api", "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=here, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    worker = subprocess.Popen(
        [str(BIN / "jobqueue"), "worker"], env=env, cwd=here,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, api)
        # The service settings too: the Python block talks to the queue directly.
        yield {**env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
               "JOBQUEUE_URL": base, "JOBQUEUE_API_KEY": API_KEY, "HOME_DIR": str(here),
               "COLUMNS": "200"}  # fmt: skip
    finally:
        for process in (worker, api):
            process.terminate()
        for process in (worker, api):
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        delete_queue_sync(redis_url, queue)


# What a block needs before it (set by an earlier block in the docs' own order), in shell.
PRELUDE = {
    # job-types.md's artifacts block talks of a report's PDF: make one, as its section does.
    'curl -H "X-API-Key: $JOBQUEUE_API_KEY" "$JOBQUEUE_URL/jobs/$ID/artifacts"': (
        'ID=$(jobqueue enqueue report-generation --data \'{"source": "queue-stats", '
        '"format": "pdf"}\' | python3 -c \'import json, sys; print(json.load(sys.stdin)["id"])\')\n'
        'jobqueue watch "$ID" >/dev/null\n'
    ),
    # "with `id_of` from above" (the image-processing block).
    "ID=$(uv run jobqueue enqueue data-processing": (
        "id_of() { python3 -c 'import json, sys; print(json.load(sys.stdin)[\"id\"])'; }\n"
    ),
}


def runnable(code: str) -> str:
    """The block as this test runs it (see the module docstring)."""
    code = code.replace("uv run jobqueue", "jobqueue").replace("uv run python", "python")
    return code.replace("export JOBQUEUE_API_KEY=...", f"export JOBQUEUE_API_KEY={API_KEY}")


def shell(script: str, env: dict[str, str], cwd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def run_lines(block: Block, env: dict[str, str]) -> None:
    """Run a block line by line where it refers to `<job id>`, else as one script."""
    prelude = next((p for first, p in PRELUDE.items() if block.first.startswith(first)), "")
    cwd = env["HOME_DIR"]
    if "<job id>" not in block.code:
        script = prelude + runnable(block.code)
        result = shell(script, env, cwd)
        assert result.returncode == 0, f"{block}\n{result.stdout}\n{result.stderr}"
        return
    job_id = ""
    for line in runnable(block.code).splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").split("#")[0].strip().partition("=")
            env = {**env, name: value}
            continue
        command = line.replace("<job id>", job_id)
        result = shell(command, env, cwd)
        assert result.returncode == 0, f"{block}: {command}\n{result.stdout}\n{result.stderr}"
        found = re.search(r'"id": "([^"]+)"', result.stdout)
        job_id = found[1] if found and "enqueue" in command else job_id


@pytest.mark.parametrize("block", [b for b in shell_blocks() if b.first in RUN_HERE], ids=str)
def test_block_runs(system: dict[str, str], block: Block) -> None:
    if "<job id>" in block.code and "enqueue" not in block.code:
        # The reading commands name a job: the README's enqueue block before them made one.
        enqueue = subprocess.run(
            ["jobqueue", "enqueue", "noop", "--data", '{"sleep_seconds": 0}'],
            env=system, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        job_id = re.search(r'"id": "([^"]+)"', enqueue.stdout)
        assert job_id is not None, enqueue.stdout
        code = block.code.replace("<job id>", job_id[1])
        block = Block(block.doc, block.line, block.language, code)
    run_lines(block, system)


def test_the_schedules_from_python_block_runs(system: dict[str, str]) -> None:
    """docs/migrating-from-taskiq-redis.md's block, "after `await broker.startup()`", in a
    process on the test queue; it leaves "heartbeat" stored and "nightly" deleted."""
    [block] = [b for b in blocks() if b.doc.startswith("docs/migrating") and b.language == "python"]
    body = "\n".join("    " + line for line in block.code.splitlines())
    program = (
        "import asyncio\n\nasync def main():\n    from service.worker import broker\n"
        f"    await broker.startup()\n{body}\n"
        "    print(sorted(s.id for s in await broker.schedules()))\n"
        "    await broker.shutdown()\n\nasyncio.run(main())\n"
    )
    result = subprocess.run(
        [str(BIN / "python"), "-c", program], env=system, cwd=system["HOME_DIR"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "['heartbeat']"
