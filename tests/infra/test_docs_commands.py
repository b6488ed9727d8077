"""Every command docs/cloud-deployment.md tells a platform team to run, checked for syntax against
the program itself: stack keys and their values, `--target` patterns resolved against the URNs of
the program's graph under mocks (with the engine's glob rules and its untargeted-parent rule),
make targets, the simulator's options and the AWS CLI calls."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from pulumi_harness import ProgramRun

from infra import simulate
from infra.config import KEY_NAMES, ConfigError, read_stack_settings

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "cloud-deployment.md"
PULUMI_COMMANDS = {
    ("stack", "init"),
    ("stack", "select"),
    ("stack", "rm"),
    ("stack", "output"),
    ("config", "set"),
    ("config", "get"),
    ("up",),
    ("destroy",),
}
PULUMI_FLAGS = {"--yes", "--target", "--stack", "--json"}
# `aws <service> <command>` the docs use, and the options each takes (AWS CLI v2).
AWS_COMMANDS = {
    ("ecr", "batch-delete-image"): {"--repository-name", "--image-ids"},
    ("elasticache", "delete-snapshot"): {"--snapshot-name"},
    ("cloudwatch", "get-metric-statistics"): {
        "--namespace",
        "--metric-name",
        "--dimensions",
        "--statistics",
        "--period",
        "--start-time",
        "--end-time",
    },
}


def commands() -> list[list[str]]:
    """Each line of every ```sh block, split as a shell would."""
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    return [shlex.split(line) for block in blocks for line in block.splitlines() if line.strip()]


def engine_glob(pattern: str) -> re.Pattern[str]:
    """The engine's --target glob (pkg/resource/deploy: UrnTargets.getMatcher): `**` matches
    anything, `*` anything but a colon, the rest literally, anchored."""
    parts = [
        "[^:]*".join(re.escape(piece) for piece in segment.split("*"))
        for segment in pattern.split("**")
    ]
    return re.compile("^" + ".*".join(parts) + "$")


def targeted(run: ProgramRun, pattern: str) -> set[str]:
    matcher = engine_glob(pattern)
    return {urn for urn in run.urns() if matcher.match(urn)}


def untargeted_parents(run: ProgramRun, urns: set[str]) -> set[str]:
    """Parents of targeted resources that are not targeted: a fresh stack's `pulumi up` refuses
    such a create (the engine's TestTargetUntargetedParent)."""
    missing = set()
    for r in run.resources:
        urn = run.urn(r.typ, r.name)
        parent = run.parents.get((r.typ, r.name))
        if urn in urns and parent is not None and run.urn(*parent) not in urns:
            missing.add(run.urn(*parent))
    return missing


def test_the_docs_walk_every_operation() -> None:
    text = DOC.read_text()
    for heading in ("First deploy", "Image promotion", "Scale test", "Rollback", "Teardown"):
        assert re.search(rf"^## {heading}\b", text, flags=re.MULTILINE), heading
    assert len(commands()) > 15


def test_urns_follow_the_engines_format(fresh_run: ProgramRun) -> None:
    assert (
        "urn:pulumi:fresh::jobqueue::jobqueue:infra:Registry$aws:ecr/repository:Repository"
        "::jobqueue-fresh-api"
    ) in fresh_run.urns()
    assert "urn:pulumi:fresh::jobqueue::jobqueue:infra:Registry::jobqueue-fresh" in fresh_run.urns()


def test_target_patterns_create_what_they_mean_on_a_fresh_stack(fresh_run: ProgramRun) -> None:
    patterns = [
        cmd[i + 1] for cmd in commands() for i, token in enumerate(cmd) if token == "--target"
    ]
    assert patterns
    for pattern in patterns:
        urns = targeted(fresh_run, pattern)
        assert urns, f"{pattern} matches nothing"
        assert not untargeted_parents(fresh_run, urns), pattern
        repositories = [u for u in urns if "ecr/repository:Repository" in u]
        assert len(repositories) == 3, pattern


def test_the_old_pattern_would_be_refused(fresh_run: ProgramRun) -> None:
    """What the issue found: the repositories alone leave their parent untargeted."""
    urns = targeted(fresh_run, "**ecr/repository:Repository**")
    assert len(urns) == 3
    assert untargeted_parents(fresh_run, urns) == {
        "urn:pulumi:fresh::jobqueue::jobqueue:infra:Registry::jobqueue-fresh"
    }


def test_pulumi_commands_and_stack_keys_exist() -> None:
    values: dict[str, str] = {}
    for cmd in commands():
        if cmd[0] != "pulumi":
            continue
        words = tuple(t for t in cmd[1:] if not t.startswith("-"))
        assert words[:2] in PULUMI_COMMANDS or words[:1] in PULUMI_COMMANDS, cmd
        assert {t for t in cmd if t.startswith("--")} <= PULUMI_FLAGS, cmd
        if words[:2] == ("config", "set"):
            key, value = words[2], words[3]
            assert key == "aws:region" or key in KEY_NAMES, key
            values[key if key == "aws:region" else f"jobqueue:{key}"] = value
    # Every value the docs set is one the program accepts.
    region = values.pop("aws:region")
    for key, value in values.items():
        try:
            read_stack_settings({key: value}, stack="acme-prod", region=region)
        except ConfigError as error:  # pragma: no cover - the assertion reports it
            pytest.fail(f"docs set {key} {value}: {error}")


def test_make_targets_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for cmd in commands():
        if cmd[0] == "make":
            target = cmd[1]
            assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.MULTILINE), target
            assert all("=" in a for a in cmd[2:]), cmd  # only VAR=value arguments


def test_simulator_and_cli_invocations_parse() -> None:
    for cmd in commands():
        if cmd[:4] == ["uv", "run", "python", "-m"] and cmd[4] == "infra.simulate":
            args = simulate.build_parser().parse_args(cmd[5:])
            assert args.profile in ("steady", "burst", "daily") or args.profile.endswith(".csv")
        elif cmd[:3] == ["uv", "run", "jobqueue"]:
            assert cmd[3] == "enqueue"
            json.loads(cmd[cmd.index("--data") + 1])


def test_aws_cli_calls_use_real_commands_and_options() -> None:
    calls = [cmd for cmd in commands() if cmd[0] == "aws"]
    assert calls
    for cmd in calls:
        options = AWS_COMMANDS.get((cmd[1], cmd[2]))
        assert options is not None, cmd
        assert {t for t in cmd if t.startswith("--")} <= options, cmd
