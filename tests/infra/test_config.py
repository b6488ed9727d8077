"""The stack configuration module: one required key, defaults that deploy, named errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pulumi_harness import region_only_config, run_program

from infra.config import KEYS, ConfigError, read_stack_settings

ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"


def settings_of(**values: str):  # type: ignore[no-untyped-def]
    return read_stack_settings(
        {f"jobqueue:{k}": v for k, v in values.items()}, stack="team-a", region=REGION
    )


def test_only_the_region_is_required() -> None:
    s = settings_of()
    assert s.environment == "team-a"  # from the stack name
    assert s.region == REGION
    assert s.network.nat_per_az is True  # not a dev environment: the production defaults
    assert s.edge.access_logs is True
    assert s.cache.snapshot_retention_days == 7
    assert s.email.sender is None
    assert s.image_tag is None  # build the images
    with pytest.raises(ConfigError, match="aws:region is required"):
        read_stack_settings({}, stack="x", region=None)


def test_dev_environments_get_the_cheap_defaults() -> None:
    s = settings_of(environment="dev")
    assert (s.network.nat_per_az, s.edge.access_logs, s.cache.snapshot_retention_days) == (
        False,
        False,
        1,
    )


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("azCount", "4", "an integer in 2..3"),
        ("azCount", "two", "an integer in 2..3"),
        ("workerMaxCount", "0", "an integer in 1..1000"),
        ("shutdownGraceSeconds", "110", "a number in 0..105"),
        ("apiCpuTargetPercent", "95", "a number in 10..90"),
        ("logRetentionDays", "10", "one of 1, 3, 5, 7, 14, 30"),
        ("cpuArchitecture", "arm", "one of X86_64, ARM64"),
        ("natPerAz", "yes", "true or false"),
        ("vpcCidr", "10.0.0.0/24", "prefix /8../16"),
        ("apiMemory", "4096", "512..2048 with apiCpu=256"),
        ("emailFrom", "not-an-address", "an e-mail address"),
        ("certificateArn", "abc", "an ACM certificate ARN"),
        ("jobModules", "acme.jobs, 9bad", "dotted module paths"),
        ("cacheShards", "2", "1 unless cacheClusterMode is true"),
        ("environment", "Prod", "lower-case letters"),
    ],
)
def test_a_bad_value_names_the_key_and_what_it_accepts(key: str, value: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_of(**{key: value})
    message = str(caught.value)
    assert message.startswith(f"jobqueue:{key} = {value!r} is not valid: it must be")
    assert allowed in message


def test_a_bad_value_stops_the_program_before_any_resource() -> None:
    with pytest.raises(Exception, match=r"jobqueue:azCount = '7' is not valid"):
        run_program({**region_only_config(), "jobqueue:azCount": "7"}, stack="bad")


def test_every_key_is_documented_with_its_default() -> None:
    """docs/cloud-deployment.md's table lists exactly the keys infra/config.py declares."""
    doc = (ROOT / "docs" / "cloud-deployment.md").read_text()
    rows = dict(re.findall(r"^\| `([A-Za-z0-9]+)` \| ([^|]*) \|", doc, flags=re.MULTILINE))
    assert set(rows) == {k.name for k in KEYS}
    for key in KEYS:
        assert rows[key.name].strip().strip("`") == key.default, key.name


def test_the_dev_stack_sets_only_what_dev_changes() -> None:
    import yaml

    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    assert set(doc["config"]) == {"aws:region"}


def test_literal_documented_defaults_are_the_readers_defaults() -> None:
    """A default shown as a plain value must give the same settings as leaving the key unset
    (defaults that depend on dev, or are described in words, are checked elsewhere)."""
    unset = settings_of()
    literal = [k for k in KEYS if not k.default.startswith("(") and " in dev" not in k.default]
    assert len(literal) > 40
    for key in literal:
        assert settings_of(**{key.name: key.default}) == unset, key.name
