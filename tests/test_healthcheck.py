"""`python -m service.healthcheck`: the container check for roles without an HTTP port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from service.healthcheck import check, record


def test_a_fresh_healthy_record_passes_and_a_stale_one_fails(tmp_path: Path):
    record("worker", fresh_for=10, directory=tmp_path)
    assert check("worker", tmp_path)[0]
    healthy, why = check("worker", tmp_path, now=time.time() + 11)
    assert not healthy
    assert "stuck" in why


def test_a_record_that_says_unhealthy_fails_with_its_detail(tmp_path: Path):
    record("worker", fresh_for=10, healthy=False, detail="stalled 3 times", directory=tmp_path)
    assert check("worker", tmp_path) == (False, f"worker pid {os.getpid()}: stalled 3 times")


def test_no_record_fails_and_a_dead_process_record_is_ignored_and_removed(tmp_path: Path):
    assert not check("metrics", tmp_path)[0]
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    stale = tmp_path / f"metrics-{pid}.json"
    stale.write_text(
        json.dumps(
            {
                "role": "metrics",
                "pid": pid,
                "written_at": 0,
                "fresh_for": 1,
                "healthy": False,
                "detail": "old",
            }
        )
    )
    record("metrics", fresh_for=60, directory=tmp_path)
    assert check("metrics", tmp_path)[0]
    assert not stale.exists()


def test_the_command_exits_by_verdict(tmp_path: Path):
    env = {**os.environ, "HEALTH_DIR": str(tmp_path)}

    def run(role: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "service.healthcheck", role]
        return subprocess.run(command, check=False, env=env, capture_output=True, text=True)

    assert run("worker").returncode == 1
    record("worker", fresh_for=60, directory=tmp_path)
    assert run("worker").returncode == 0, run("worker").stdout
    assert run("api").returncode == 2
