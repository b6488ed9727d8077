"""`jobqueue run`: one supervisor, three child processes (API, workers, metrics), and Valkey
embedded when no Redis is configured."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import httpx

from service.cli.common import (
    API_KEY_FILE,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    CliError,
    out,
    stored_api_key,
)
from service.settings import HANDBACK_MARGIN_SECONDS, Settings

# Locally, Ctrl-C should not wait the cloud's 90 s for running jobs: they are handed back to
# pending and run again on the next start, so nothing is lost by a short grace.
LOCAL_SHUTDOWN_GRACE_SECONDS = 10.0
# After SIGTERM a child gets its grace plus the worker's hand-back margin before it is killed,
# as ECS gives a task (service.settings.HANDBACK_MARGIN_SECONDS).
STOP_MARGIN_SECONDS = float(HANDBACK_MARGIN_SECONDS)
READY_TIMEOUT_SECONDS = 30.0


def ensure_api_key(settings: Settings) -> tuple[str, bool]:
    """A key for the local API: the configured one, else the stored one, else a new one.

    Returns (key, generated); a generated key is stored in DATA_DIR/api-key (mode 600) so a
    restart and the client commands reuse it.
    """
    configured = settings.api_key_values()
    if configured:
        return configured[0], False
    stored = stored_api_key(settings)
    if stored:
        return stored, True
    path = settings.data_dir / API_KEY_FILE
    key = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(key + "\n", encoding="utf-8")
    return key, True


class LocalStack:
    """Supervises the local system: Valkey (embedded when no Redis is configured), the API,
    the workers and the metrics loop, each its own process; stops them all on Ctrl-C/SIGTERM."""

    def __init__(self, settings: Settings, host: str, port: int) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.env = dict(os.environ)
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.valkey: Any = None
        self.stop = threading.Event()

    def run(self) -> int:
        """Start everything, wait for a signal or a child's death, stop everything."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop.set())
        try:
            key, generated = self._prepare()
            self._start_children()
            self._wait_ready()
            self._banner(key, generated)
            return self._supervise()
        finally:
            self._stop_all()

    def _prepare(self) -> tuple[str, bool]:
        if not self.settings.redis_configured:
            from service.embedded import start_embedded_valkey

            self.valkey = start_embedded_valkey(self.settings.data_dir / "valkey", persist=True)
            self.env["REDIS_URL"] = self.valkey.connection_url
        key, generated = ensure_api_key(self.settings)
        if generated:
            self.env["API_KEYS"] = key
        self.env.setdefault("SHUTDOWN_GRACE_SECONDS", str(LOCAL_SHUTDOWN_GRACE_SECONDS))
        return key, generated

    def _start_children(self) -> None:
        me = [sys.executable, "-m", "service.cli"]
        for name, argv in (
            ("api", [*me, "api", "--host", self.host, "--port", str(self.port)]),
            ("worker", [*me, "worker"]),
            ("metrics", [*me, "metrics"]),
        ):
            # A session of its own: Ctrl-C reaches only this supervisor, which then stops the
            # children in order instead of all of them racing to exit.
            child = subprocess.Popen(argv, env=self.env, start_new_session=True)  # noqa: S603
            self.children.append((name, child))

    @property
    def base_url(self) -> str:
        """Where the local API answers (loopback when listening on every interface)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline and not self.stop.is_set():
            self._check_children()
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).is_success:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        if not self.stop.is_set():
            raise CliError(f"the API did not become ready at {self.base_url}", EXIT_UNAVAILABLE)

    def _banner(self, key: str, generated: bool) -> None:
        url = self.base_url
        out.print(f"[bold green]jobqueue is running[/]  API {url}  docs {url}/docs  UI {url}/ui")
        if generated:
            where = self.settings.data_dir / API_KEY_FILE
            out.print(f"API key: [bold]{key}[/]  (stored in {where})", highlight=False)
        else:
            out.print("API key: the one in API_KEYS / API_KEYS_FILE")
        redis = self.env.get("REDIS_URL") or "REDIS_HOST"
        out.print(f"Redis: {redis}   workers: {self.settings.worker_count}   Ctrl-C stops")

    def _check_children(self) -> None:
        for name, child in self.children:
            if child.poll() is not None:
                raise CliError(
                    f"the {name} process exited with {child.returncode}", EXIT_UNAVAILABLE
                )

    def _supervise(self) -> int:
        while not self.stop.wait(0.5):
            self._check_children()
        return EXIT_OK

    def _stop_all(self) -> None:
        grace = float(self.env["SHUTDOWN_GRACE_SECONDS"]) + STOP_MARGIN_SECONDS
        for _, child in self.children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + grace
        for _, child in self.children:
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        if self.valkey is not None:
            self.valkey.stop()
