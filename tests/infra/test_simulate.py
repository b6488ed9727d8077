"""The capacity simulator: the dev stack drains a burst without a busy-task scale-in or a flap,
from the very numbers the program deploys."""

from __future__ import annotations

import itertools
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pulumi_harness import ProgramRun

from infra import simulate
from infra.chart import timeline_svg
from infra.config import read_stack_settings
from service.metrics import collector

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def burst() -> simulate.Result:
    return simulate.run("dev", "burst")


def test_burst_drains_without_a_busy_task_scale_in_or_a_flap(burst: simulate.Result) -> None:
    plan = simulate.stack_settings("dev").worker.scaling
    summary = burst.summary()
    assert set(summary) == {
        "profile",
        "max_tasks",
        "scale_out_events",
        "scale_in_events",
        "max_oldest_wait_s",
        "drained_s",
        "busy_task_scale_ins",
        "cost_usd",
    }
    assert summary["busy_task_scale_ins"] == 0
    assert summary["max_tasks"] == plan.max_tasks
    assert summary["drained_s"] is not None
    assert 0 < summary["drained_s"] < 20 * 60
    # No flap: scale-ins at least a cooldown apart, and no scale-out within a cooldown after one.
    ins, outs = burst.scale_in_events, burst.scale_out_events
    assert ins
    assert all(b - a >= plan.scale_in_cooldown_seconds for a, b in itertools.pairwise(ins))
    for scale_in in ins:
        assert not [o for o in outs if 0 < o - scale_in < plan.scale_in_cooldown_seconds]
    # The fleet never scales in while the burst's backlog is still waiting.
    first_in = ins[0] // 60
    assert all(m.oldest_wait_s == 0 for m in burst.timeline if m.minute >= first_in)


def test_without_protection_the_same_burst_stops_busy_tasks() -> None:
    """The figure can fail: the protection is what keeps it at zero."""
    assert simulate.run("dev", "burst", protection=False).busy_task_scale_ins > 0


def test_the_simulator_reads_the_policy_the_program_deploys(dev_run: ProgramRun) -> None:
    policy = dev_run.one("aws:appautoscaling/policy:Policy", "-worker-backlog").inputs
    config = policy["targetTrackingScalingPolicyConfiguration"]
    plan = simulate.stack_settings("dev").worker.scaling
    assert config["targetValue"] == plan.target_backlog_per_task
    assert config["scaleInCooldown"] == plan.scale_in_cooldown_seconds
    assert config["scaleOutCooldown"] == plan.scale_out_cooldown_seconds
    target = dev_run.one("aws:appautoscaling/target:Target", "-worker-").inputs
    assert (target["minCapacity"], target["maxCapacity"]) == (plan.min_tasks, plan.max_tasks)
    # ...and computes the metric with the metrics task's own functions.
    assert simulate.backlog_of is collector.backlog_of
    assert simulate.backlog_per_task is collector.backlog_per_task


def test_a_csv_profile_is_replayed(tmp_path: Path) -> None:
    path = tmp_path / "load.csv"
    path.write_text("minute,jobs\n" + "".join(f"{m},{120 if m < 3 else 0}\n" for m in range(6)))
    result = simulate.run("dev", str(path))
    assert [m.arrivals for m in result.timeline[:4]] == [120, 120, 120, 0]
    assert result.summary()["busy_task_scale_ins"] == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("1\nmany\n")
    with pytest.raises(ValueError, match="is not a number of jobs"):
        simulate.csv_profile(bad)


def test_json_output_and_a_bad_stack(capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate.main(["--stack", "dev", "--profile", "steady", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["profile"] == "steady"
    assert summary["scale_in_events"] == 0
    assert simulate.main(["--stack", "nope", "--profile", "steady"]) == 2
    assert "Pulumi.nope.yaml not found" in capsys.readouterr().err


def test_more_tasks_allowed_means_a_shorter_wait() -> None:
    settings = read_stack_settings(
        {"jobqueue:workerMaxCount": "8"}, stack="dev", region="us-east-1"
    )
    plan = settings.worker.scaling
    wide = simulate.simulate(plan, simulate.builtin_profile("burst", plan), "burst")
    assert wide.max_oldest_wait_s < simulate.run("dev", "burst").max_oldest_wait_s


def test_the_chart_in_the_docs_is_the_simulators_current_output(burst: simulate.Result) -> None:
    plan = simulate.stack_settings("dev").worker.scaling
    svg = timeline_svg(burst, plan)
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 5
    committed = (ROOT / "docs" / "capacity.svg").read_text()
    assert committed == svg, "regenerate with `make simulate`"


def test_the_figures_in_the_docs_are_the_simulators(burst: simulate.Result) -> None:
    doc = (ROOT / "docs" / "cloud-deployment.md").read_text()
    quoted = doc.split("--profile burst --json\n```\n\nprints `", 1)[1].split("`", 1)[0]
    assert json.loads(quoted.replace("\n", " ")) == burst.summary()
