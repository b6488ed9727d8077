"""The API fixtures of tests/api (an app with its lifespan, a keyed client), for the
schedules API tests; the harness lives beside them, as tests/cli/conftest.py reads it."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from tests.api.conftest import app, client, settings

__all__ = ["app", "client", "settings"]
