"""docs/job-types.md shows the runnable example verbatim, and every built-in type is documented
with the defaults it really has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.jobs import BUILTIN_MODULES, load_job_types
from service.jobs.registry import REGISTRY
from service.queue.queue import QueueConfig

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "job-types.md").read_text()
BUILTIN = ["data-processing", "image-processing", "email-sending", "report-generation"]


def test_the_docs_example_block_is_the_example_module_word_for_word():
    marker = "<!-- example: docs/examples/word_count.py -->\n```python\n"
    start = DOC.index(marker) + len(marker)
    block = DOC[start : DOC.index("```\n", start)]
    assert block == (REPO / "docs" / "examples" / "word_count.py").read_text()


def test_builtin_modules_register_the_four_types():
    registry = load_job_types()
    assert {f"service.jobs.{name.replace('-', '_')}" for name in BUILTIN} <= set(BUILTIN_MODULES)
    assert set(BUILTIN) <= set(registry.names())


@pytest.mark.parametrize("name", BUILTIN)
def test_documented_defaults_are_the_real_ones(name):
    load_job_types()
    defaults = REGISTRY.get(name).defaults
    row = re.search(rf"^\| `{name}` \|[^|]*\| (\d+) \|[^|]*\| (\d+) s \| (\w+) \|$", DOC, re.M)
    assert row is not None, f"no table row for {name}"
    attempts, timeout, concurrency = row.groups()
    assert int(attempts) == defaults.attempts
    assert float(timeout) == defaults.timeout_seconds
    assert concurrency == ("none" if defaults.concurrency is None else str(defaults.concurrency))


@pytest.mark.parametrize("name", BUILTIN)
def test_type_defaults_become_the_job_options_at_enqueue(name):
    load_job_types()
    job_type = REGISTRY.get(name)
    minimal = {
        "data-processing": {"dataset": {"records": []}},
        "image-processing": {"uri": "file:///x.png"},
        "email-sending": {"to": ["a@example.com"], "subject": "s", "text": "t"},
        "report-generation": {"source": "queue-stats"},
    }[name]
    spec = job_type.build_spec(minimal, QueueConfig())
    assert (spec.attempts, spec.backoff, spec.timeout_seconds) == (
        job_type.defaults.attempts,
        job_type.defaults.backoff,
        job_type.defaults.timeout_seconds,
    )
    overridden = job_type.build_spec(minimal, QueueConfig(), attempts=9, timeout_seconds=7)
    assert (overridden.attempts, overridden.timeout_seconds) == (9, 7)


def test_the_documented_nesting_limit_is_the_real_one():
    from service.jobs.registry import MAX_DATA_DEPTH

    usage = (REPO / "docs" / "example-usage.md").read_text()
    for text in (DOC, usage):
        assert re.search(rf"at most {MAX_DATA_DEPTH}\s+levels", text)
