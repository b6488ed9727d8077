"""images/Dockerfile read statically: what it copies, what it runs, and as whom."""

from __future__ import annotations

import re
import tomllib

import pytest
from dockerfile_reader import (
    DOCKERFILE,
    ROLES,
    ROOT,
    bind_mount_sources,
    copy_sources,
    dockerignored,
    parse_dockerfile,
    stage_chain,
)

GLOBAL_ARGS, STAGES = parse_dockerfile()
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
EXPECTED_COMMANDS = {
    "api": ["jobqueue", "api", "--host", "0.0.0.0", "--port", "8000"],
    "worker": ["jobqueue", "worker"],
    "metrics": ["jobqueue", "metrics"],
}


def _resolve(image: str) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: GLOBAL_ARGS[m.group(1)], image)


def _last(role: str, keyword: str) -> str | None:
    for stage in stage_chain(STAGES, role):
        found = stage.all(keyword)
        if found:
            return found[-1].args
    return None


def test_every_role_has_a_target() -> None:
    assert {s.name for s in STAGES} >= set(ROLES)


def test_base_images_are_pinned_by_version() -> None:
    python = _resolve(GLOBAL_ARGS["PYTHON_IMAGE"])
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", python), python
    assert re.fullmatch(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", GLOBAL_ARGS["UV_IMAGE"])
    for stage in STAGES:
        base = _resolve(stage.base)
        assert ":latest" not in base
        assert base in {s.name for s in STAGES} or ":" in base, base


@pytest.mark.parametrize(
    "source",
    sorted(
        {
            src
            for stage in STAGES
            for ins in stage.instructions
            for src in (
                copy_sources(ins) if ins.keyword in ("COPY", "ADD") else bind_mount_sources(ins)
            )
        }
    ),
)
def test_every_copy_source_exists_and_is_in_the_build_context(source: str) -> None:
    assert (ROOT / source).exists(), f"{source} is copied but does not exist"
    assert not dockerignored(source), f"{source} is copied but .dockerignore drops it"


def test_dockerignore_keeps_secrets_tests_and_infra_out_of_the_context() -> None:
    for path in (
        ".env",
        "service/.env",
        ".venv/bin/python",
        ".git/config",
        "tests/conftest.py",
        "infra/__main__.py",
        "Pulumi.dev.yaml",
        "service/__pycache__/x.pyc",
    ):
        assert dockerignored(path), path
    assert not dockerignored("service/settings.py")


def test_dependencies_install_from_the_lock_in_a_cached_layer_before_the_code() -> None:
    build = next(s for s in STAGES if s.name == "build")
    runs = [i.args for i in build.instructions if i.keyword == "RUN"]
    assert all("uv sync --frozen" in r for r in runs if "uv sync" in r)
    first_sync = next(i for i, ins in enumerate(build.instructions) if "uv sync" in ins.args)
    first_code = next(
        i
        for i, ins in enumerate(build.instructions)
        if ins.keyword == "COPY" and "service" in ins.args
    )
    assert first_sync < first_code, "dependency layer must not depend on the source code"
    assert "--no-install-project" in build.instructions[first_sync].args
    assert "type=cache" in build.instructions[first_sync].args
    assert all("--no-default-groups" in r for r in runs if "uv sync" in r), "no dev/infra deps"


@pytest.mark.parametrize("role", ROLES)
def test_runs_as_a_non_root_user(role: str) -> None:
    user = _last(role, "USER")
    assert user is not None
    assert user.split(":")[0] not in ("root", "0")


@pytest.mark.parametrize("role", ROLES)
def test_command_is_the_projects_entry_point(role: str) -> None:
    chain = stage_chain(STAGES, role)
    cmd = chain[0].all("CMD")[-1].exec_form()
    assert cmd == EXPECTED_COMMANDS[role]
    assert cmd[0] in SCRIPTS, f"{cmd[0]} is not a [project.scripts] entry point"
    assert not any(s.all("ENTRYPOINT") for s in chain)


def test_api_has_a_healthcheck_on_healthz() -> None:
    healthcheck = stage_chain(STAGES, "api")[0].all("HEALTHCHECK")[-1]
    assert "/healthz" in " ".join(healthcheck.exec_form())


def test_no_secret_is_baked_into_an_image() -> None:
    for stage in STAGES:
        for ins in stage.instructions:
            if ins.keyword in ("ENV", "ARG"):
                assert not re.search(r"(PASSWORD|SECRET|TOKEN|API_KEYS|AWS_)", ins.args), ins
    assert DOCKERFILE.read_text().count("COPY .") == 0, "never copy the whole context"
