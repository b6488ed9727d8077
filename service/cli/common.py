"""What every `jobqueue` command shares: exit codes, the error it reports, its consoles."""

from __future__ import annotations

import argparse

from rich.console import Console

from service.settings import Settings

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_UNAVAILABLE = 4
EXIT_INTERRUPTED = 130

# Where `jobqueue run` keeps the key it generated, so restarts and client commands reuse it.
API_KEY_FILE = "api-key"

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class CliError(Exception):
    """A failure to report as one sentence with an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def stored_api_key(settings: Settings) -> str | None:
    """The key `jobqueue run` generated, if there is one."""
    path = settings.data_dir / API_KEY_FILE
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None


def port_number(text: str) -> int:
    """A TCP port for `--port`; anything else is a usage error (exit 2), not a crash."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return port
