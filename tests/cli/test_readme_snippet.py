"""The README's taskiq snippet, as written, against a real `jobqueue run` with its embedded
Valkey: no exports, the snippet finds the instance through .jobqueue/run.env."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from api_harness import ROOT, free_port
from test_supervisor import read_until_banner, run_env, start_run

pytestmark = pytest.mark.slow


def readme_python_snippet() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Using the queue from Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


def test_the_readme_snippet_runs_against_jobqueue_run(tmp_path: Path) -> None:
    process = start_run(tmp_path, run_env(tmp_path, PORT=str(free_port())))
    try:
        banner = read_until_banner(process)
        run_env_file = tmp_path / ".jobqueue" / "run.env"
        redis_url = next(ln for ln in banner if "export REDIS_URL=" in ln).split("=", 1)[1]
        assert f"REDIS_URL={redis_url}" in run_env_file.read_text().splitlines()
        program = "import asyncio\n\nasync def main():\n" + textwrap.indent(
            readme_python_snippet() + "assert not result.is_err, result.error\nprint('ok')\n",
            "    ",
        ) + "\nasyncio.run(main())\n"  # fmt: skip
        unset = ("REDIS_URL", "REDIS_HOST", "QUEUE_NAME", "KEY_PREFIX", "DATA_DIR")
        env = {k: v for k, v in os.environ.items() if k not in unset}
        env["PYTHONPATH"] = str(ROOT)
        snippet = subprocess.run(
            [sys.executable, "-c", program], cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
        assert snippet.returncode == 0, snippet.stderr
        assert snippet.stdout.strip().splitlines()[-1] == "ok"
        os.killpg(process.pid, signal.SIGINT)
        process.communicate(timeout=40)
        assert process.returncode == 0
        assert not run_env_file.exists()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
