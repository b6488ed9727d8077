"""Fixtures for the job-type tests: settings pointed at temporary folders, real images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from job_test_support import encoded, quadrant_image

from service.settings import Settings, get_settings


@pytest.fixture
def job_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings whose artifacts and outbox live in this test's temporary folder.

    Job code reads `get_settings()`, so the cache is cleared on the way in and out: the next
    test (ours or anyone's) reads its own environment again.
    """
    monkeypatch.setenv("ARTIFACT_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("EMAIL_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.setenv("EMAIL_BACKEND", "file")
    monkeypatch.delenv("ARTIFACT_BUCKET", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def png_bytes() -> bytes:
    """A real 200x100 RGBA PNG."""
    return encoded(quadrant_image("RGBA", (200, 100)), "PNG")


@pytest.fixture
def jpeg_bytes() -> bytes:
    """A real 300x200 RGB JPEG."""
    return encoded(quadrant_image("RGB", (300, 200)), "JPEG")
