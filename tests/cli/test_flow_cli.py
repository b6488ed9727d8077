"""`jobqueue flow FILE.json` against a real API server."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from cli_runner import JOBQUEUE, client_env, run_cli

FLOW = {
    "type": "noop",
    "options": {"priority": "high"},
    "children": [{"type": "noop", "data": {"sleep_seconds": 0}}, {"type": "noop"}],
}


def test_flow_posts_the_file_and_prints_every_id(server: str, tmp_path: Path) -> None:
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(FLOW))
    result = run_cli("flow", str(path), env=client_env(server))
    assert result.returncode == 0, result.stderr
    flow = json.loads(result.stdout)
    assert flow["root"]["status"] == "waiting-children"
    assert len(flow["ids"]) == 3
    status = run_cli("status", flow["ids"][0], env=client_env(server))
    assert json.loads(status.stdout)["status"] == "waiting-children"


def test_flow_reads_standard_input_for_a_dash(server: str) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("JOBQUEUE_")}
    result = subprocess.run(
        [JOBQUEUE, "flow", "-"],
        input=json.dumps(FLOW),
        env={**base, "DATA_DIR": "/nonexistent-jobqueue-test", **client_env(server)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["ids"]) == 3


def test_bad_flow_files_exit_with_one_sentence(server: str, tmp_path: Path) -> None:
    env = client_env(server)
    missing = run_cli("flow", str(tmp_path / "nope.json"), env=env)
    assert missing.returncode == 2
    assert missing.stderr.startswith("jobqueue: cannot read the flow file")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    invalid = run_cli("flow", str(broken), env=env)
    assert invalid.returncode == 2
    assert "is not valid JSON" in invalid.stderr
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"type": "noop", "children": [{"type": "nope"}]}))
    refused = run_cli("flow", str(unknown), env=env)
    assert refused.returncode == 3
    assert "children[0].type" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
