"""A third-party policy engine (checkov's AWS policies) over the program's synthesized resources.

The program runs once under mocks with a production-shaped configuration; its resources are
written as a Terraform plan (pulumi-aws is bridged from the Terraform provider, tf_plan.py) and
checkov runs once per session over it. Every finding must be in the reasoned allow-list, and
every allow-list entry must still match a finding.

Checkov's pins conflict with the project's (it holds boto3 and others at old versions), so it is
not in the lock: `uv tool run` installs the exact versions of tests/infra/policy/
checkov-requirements.txt (`uv pip compile --universal` of checkov==3.3.30) into uv's tool
cache, from PyPI, for the interpreter running the tests.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi_harness import ProgramRun, run_program

sys.path.insert(0, str(Path(__file__).parent / "policy"))
import tf_plan

POLICY_DIR = Path(__file__).parent / "policy"
CHECKOV = "checkov==3.3.30"
PRODUCTION_SHAPED = {
    "aws:region": "us-east-1",
    "jobqueue:certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc",
    "jobqueue:emailFrom": "jobs@example.com",
    "jobqueue:alertEmail": "oncall@example.com",
}
# Checks about issue 18's points 3-7 (edge, cache, deployments, network): none may be allowed.
NEVER_ALLOWED = {
    "CKV_AWS_2",  # ALB listener not HTTPS
    "CKV_AWS_103",  # TLS below 1.2
    "CKV_AWS_91",  # ALB access logs
    "CKV_AWS_260",  # 0.0.0.0/0 to port 80
    "CKV_AWS_24",  # 0.0.0.0/0 to port 22
    "CKV_AWS_25",  # 0.0.0.0/0 to port 3389
    "CKV_AWS_277",  # 0.0.0.0/0 to all ports
    "CKV_AWS_382",  # egress to 0.0.0.0/0 on all ports
    "CKV_AWS_130",  # subnets assigning public IPs
    "CKV_AWS_333",  # ECS tasks with public IPs
    "CKV_AWS_29",  # ElastiCache at-rest encryption
    "CKV_AWS_30",  # ElastiCache in-transit encryption
    "CKV_AWS_31",  # ElastiCache auth token
    "CKV2_AWS_5",  # security groups attached
    "CKV2_AWS_11",  # VPC flow logs
    "CKV2_AWS_12",  # default security group restricts all traffic
    "CKV2_AWS_20",  # HTTP redirects to HTTPS
}


@pytest.fixture(scope="session")
def policy_run() -> ProgramRun:
    return run_program(PRODUCTION_SHAPED, stack="policy")


@pytest.fixture(scope="session")
def findings(policy_run: ProgramRun, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    uv = shutil.which("uv")
    assert uv, "uv runs the policy engine (make setup installs it)"
    plan = tmp_path_factory.mktemp("policy") / "plan.json"
    plan.write_text(json.dumps(tf_plan.plan(policy_run)))
    command = [
        uv, "tool", "run", "--python", sys.executable,
        "--with-requirements", str(POLICY_DIR / "checkov-requirements.txt"),
        "--from", CHECKOV, "checkov",
        "-f", str(plan), "--framework", "terraform_plan",
        "-o", "json", "--compact", "--skip-download",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=540, check=False)
    assert done.returncode in (0, 1), done.stderr[-2000:]  # 1: some checks failed
    report = json.loads(done.stdout)
    return report[0] if isinstance(report, list) else report


def allow_list() -> list[dict[str, Any]]:
    return list(yaml.safe_load((POLICY_DIR / "allow-list.yaml").read_text()))


def allowed(finding: dict[str, Any], entries: list[dict[str, Any]]) -> bool:
    return any(
        e["check"] == finding["check_id"]
        and any(fnmatch.fnmatch(finding["resource"], p) for p in e["resources"])
        for e in entries
    )


def test_every_resource_type_reaches_the_policy_engine(policy_run: ProgramRun) -> None:
    assert tf_plan.unscanned_types(policy_run) == set()


@pytest.mark.timeout(600)  # the first run in a clean environment installs checkov
def test_checkov_finds_nothing_outside_the_reasoned_allow_list(findings: dict[str, Any]) -> None:
    summary = findings["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] > 100
    assert summary["passed"] > 200  # the policies really ran over the resources
    failed = findings["results"]["failed_checks"]
    unexpected = [
        f"{f['check_id']} {f['resource']}: {f['check_name']}"
        for f in failed
        if not allowed(f, allow_list())
    ]
    assert not unexpected, "new policy findings:\n" + "\n".join(unexpected)


@pytest.mark.timeout(600)
def test_every_allow_list_entry_is_reasoned_used_and_outside_issue_18s_points(
    findings: dict[str, Any],
) -> None:
    failed = findings["results"]["failed_checks"]
    for entry in allow_list():
        assert entry["check"] not in NEVER_ALLOWED, entry["check"]
        assert len(entry["reason"].split()) >= 15, f"{entry['check']}: say why"
        assert any(allowed(f, [entry]) for f in failed), f"{entry['check']} matches nothing"
    passed = {p["check_id"] for p in findings["results"]["passed_checks"]}
    # The edge, network and cache policies ran and passed on this graph.
    assert {"CKV_AWS_103", "CKV_AWS_91", "CKV2_AWS_11", "CKV2_AWS_12", "CKV_AWS_130"} <= passed
