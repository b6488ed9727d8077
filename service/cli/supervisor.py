"""`jobqueue run`: one supervisor, three child processes (API, workers, metrics), and Valkey
embedded when no Redis is configured."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from types import FrameType
from typing import Any

from service.cli.common import (
    API_KEY_FILE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    CliError,
    out,
    refuse_taken_port,
    stored_api_key,
)
from service.processes import SUPERVISED_ENV, set_parent_death_signal
from service.settings import HANDBACK_MARGIN_SECONDS, RUN_ENV_FILE, Settings

# Locally, Ctrl-C means "stop now": running jobs are handed back to pending at once (not after
# their lease) and run again on the next start, so waiting for them would only delay the stop.
LOCAL_SHUTDOWN_GRACE_SECONDS = 0.0
# After SIGTERM a child gets its grace plus the worker's hand-back margin before it is killed,
# as ECS gives a task (service.settings.HANDBACK_MARGIN_SECONDS).
STOP_MARGIN_SECONDS = float(HANDBACK_MARGIN_SECONDS)
READY_TIMEOUT_SECONDS = 30.0
# A stop signal this soon after the first is the same Ctrl-C delivered twice (see _on_signal);
# a person's second Ctrl-C comes later than this.
DUPLICATE_SIGNAL_SECONDS = 1.0


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


class ForcedStopError(Exception):
    """A second Ctrl-C/SIGTERM while stopping: kill everything now."""


class LocalStack:
    """Supervises the local system: Valkey (embedded when no Redis is configured), the API,
    the workers and the metrics loop, each its own process; stops them in order on
    Ctrl-C/SIGTERM (workers first, so they hand their jobs back while Redis still answers, then
    the API and metrics, Valkey last)."""

    def __init__(self, settings: Settings, host: str, port: int) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.env = dict(os.environ)
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.valkey: Any = None
        self.stop = threading.Event()
        self._first_signal_at = 0.0

    def run(self) -> int:
        """Start everything, wait for a signal or a child's death, stop everything."""
        # Before anything starts: the API would otherwise fail only after Valkey, the workers
        # and the banner, leaving a half-started system to tear down.
        refuse_taken_port(self.host, self.port)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        try:
            key, generated = self._prepare()
            self._start_children()
            self._wait_ready()
            self._write_run_env(key)
            self._banner(key, generated)
            status = self._supervise()
            self._stop_in_order()
        except ForcedStopError:
            out.print("jobqueue: second stop signal: killing every process now", highlight=False)
            self._kill_all()
            return EXIT_INTERRUPTED
        except CliError:
            self._stop_in_order()
            raise
        except BaseException:
            self._kill_all()
            raise
        return status

    def _on_signal(self, signum: int, _: FrameType | None) -> None:
        # The first signal only asks for the ordered stop; a second one while it runs forces.
        # One Ctrl-C can arrive twice: `uv run` (as `make run` starts us) passes on the SIGINT
        # the terminal already sent its whole process group, us included. So a signal within
        # DUPLICATE_SIGNAL_SECONDS of the first is that same Ctrl-C, not a second one.
        now = time.monotonic()
        if self.stop.is_set():
            if now - self._first_signal_at >= DUPLICATE_SIGNAL_SECONDS:
                raise ForcedStopError
            return
        self._first_signal_at = now
        self.stop.set()

    def _prepare(self) -> tuple[str, bool]:
        if not self.settings.redis_configured:
            from service.embedded import start_embedded_valkey

            self.valkey = start_embedded_valkey(self.settings.data_dir / "valkey", persist=True)
            self.env["REDIS_URL"] = self.valkey.connection_url
        else:
            self.env["REDIS_URL"] = self.settings.resolved_redis_url()
        key, generated = ensure_api_key(self.settings)
        if generated:
            self.env["API_KEYS"] = key
        self.env.setdefault("SHUTDOWN_GRACE_SECONDS", str(LOCAL_SHUTDOWN_GRACE_SECONDS))
        self.env[SUPERVISED_ENV] = "1"
        return key, generated

    def _start_children(self) -> None:
        me = [sys.executable, "-m", "service.cli"]
        for name, argv in (
            ("worker", [*me, "worker"]),
            ("api", [*me, "api", "--host", self.host, "--port", str(self.port)]),
            ("metrics", [*me, "metrics"]),
        ):
            # A session of its own: Ctrl-C reaches only this supervisor, which then stops the
            # children in order instead of all of them racing to exit. The parent-death signal
            # (armed before exec, from this long-lived main thread) ends the child if this
            # supervisor is killed; the child watches for its own children the same way.
            self.children[name] = subprocess.Popen(  # noqa: S603
                argv,
                env=self.env,
                start_new_session=True,
                preexec_fn=set_parent_death_signal,  # noqa: PLW1509 (no other thread runs yet)
            )

    @property
    def base_url(self) -> str:
        """Where the local API answers (loopback when listening on every interface)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    def _wait_ready(self) -> None:
        import httpx  # here: `jobqueue worker` imports this module, and httpx is slow to import

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

    def _connection_settings(self, key: str) -> dict[str, str]:
        """What a program needs to use this running instance: the broker's Redis and queue, and
        the CLI's API URL and key."""
        return {
            "REDIS_URL": self.env["REDIS_URL"],
            "QUEUE_NAME": self.settings.queue_name,
            "KEY_PREFIX": self.settings.key_prefix,
            "JOBQUEUE_URL": self.base_url,
            "JOBQUEUE_API_KEY": key,
        }

    def _write_run_env(self, key: str) -> None:
        # Read by service.settings when the environment names no Redis, so `service.worker`'s
        # broker and the CLI find this instance (its Valkey port moves when 16379 is busy).
        lines = [f"{name}={value}" for name, value in self._connection_settings(key).items()]
        RUN_ENV_FILE.parent.mkdir(parents=True, exist_ok=True)
        RUN_ENV_FILE.touch(mode=0o600)
        RUN_ENV_FILE.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _banner(self, key: str, generated: bool) -> None:
        url = self.base_url
        out.print(f"[bold green]jobqueue is running[/]  API {url}  docs {url}/docs  UI {url}/ui")
        if generated:
            where = self.settings.data_dir / API_KEY_FILE
            out.print(f"API key: [bold]{key}[/]  (stored in {where})", highlight=False)
        else:
            out.print("API key: the one in API_KEYS / API_KEYS_FILE")
        out.print(
            f"Redis: {self.env['REDIS_URL']}   workers: {self.settings.worker_count}   "
            "Ctrl-C stops",
            highlight=False,
        )
        out.print(
            f"Other shells: (also in {RUN_ENV_FILE}, which service.settings reads by default)",
            highlight=False,
        )
        for name, value in self._connection_settings(key).items():
            out.print(f"  export {name}={value}", highlight=False, markup=False)

    def _check_children(self) -> None:
        for name, child in self.children.items():
            if child.poll() is not None:
                raise CliError(
                    f"the {name} process exited with {child.returncode}", EXIT_UNAVAILABLE
                )

    def _supervise(self) -> int:
        while not self.stop.wait(0.5):
            self._check_children()
        return EXIT_OK

    def _stop_in_order(self) -> None:
        grace = float(self.env["SHUTDOWN_GRACE_SECONDS"]) + STOP_MARGIN_SECONDS
        self._step("stopping the workers: no new jobs, running ones go back to pending")
        self._stop(["worker"], grace)
        self._step("stopping the API and the metrics loop")
        self._stop(["api", "metrics"], grace)
        if self.valkey is not None:
            self._step("stopping Valkey")
            self.valkey.stop()
            self.valkey = None
        RUN_ENV_FILE.unlink(missing_ok=True)
        self._step("stopped")

    @staticmethod
    def _step(text: str) -> None:
        out.print(f"jobqueue: {text}", highlight=False, markup=False)

    def _stop(self, names: list[str], grace: float) -> None:
        children = [self.children[name] for name in names]
        for child in children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + grace
        for child in children:
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_group(child)

    def _kill_all(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # nothing left to force
        for child in self.children.values():
            if child.poll() is None:
                _kill_group(child)
        if self.valkey is not None:
            self.valkey.terminate()
            self.valkey = None
        RUN_ENV_FILE.unlink(missing_ok=True)


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    """SIGKILL a child and whatever it started (its session is its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()
