"""ECS task scale-in protection while a worker task holds jobs.

Worker autoscaling scales in on a queue metric, which knows nothing about which task is busy.
Without protection ECS may stop a task in the middle of a long job; the job would survive (it is
handed back on SIGTERM) but its work so far would be wasted. The ECS agent inside every task
exposes `$ECS_AGENT_URI/task-protection/v1/state`: a busy task marks itself protected, an idle one
clears the mark, and scale-in then only picks idle tasks.

Protection belongs to the *task*, but a task runs WORKER_COUNT worker processes, each with its
own `TaskProtection`. Left to themselves, an idle process would clear the protection while a
sibling still runs jobs. So the processes of one task share a small state file (in the task's
`/tmp`) under an exclusive lock: each records whether it is busy, and the task is protected while
any live process is, cleared only when none is.

The protection expires on its own (`ExpiresInMinutes`, TASK_PROTECTION_MINUTES, 15 by default),
so a worker that hangs or loses its agent cannot pin a task forever; while busy we renew it
shortly before it lapses. That bound is also how long a busy task can hold up a rolling
deployment: ECS does not stop a protected task, so the old revision's busy tasks finish (or
their protection lapses) while the new revision's tasks start beside them.

On SIGTERM the task is going away whatever it holds (Spot interruption, a manual stop, a
deployment after the protection lapsed): `release()` clears the protection for the whole task
and stops this process renewing it, so a draining worker never extends it while it hands its
jobs back.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from service.processes import pid_alive

if TYPE_CHECKING:
    import httpx  # imported when the agent is first called: it is slow to import

logger = logging.getLogger(__name__)

PROTECTION_PATH = "/task-protection/v1/state"
# The agent answers locally; a slow answer must not stall the heartbeat that calls us.
AGENT_TIMEOUT_SECONDS = 5.0
# A sibling holds the state lock across one agent call at most; wait a little longer than that,
# then skip this beat (the next heartbeat retries) rather than stall the worker.
STATE_LOCK_WAIT_SECONDS = 2 * AGENT_TIMEOUT_SECONDS
STATE_LOCK_POLL_SECONDS = 0.01
PROTECTION_MINUTES_ENV = "TASK_PROTECTION_MINUTES"
DEFAULT_PROTECTION_MINUTES = 15
# The agent accepts ExpiresInMinutes of 1..2880 (48 hours).
MAX_PROTECTION_MINUTES = 2880
# Renew this long before the protection lapses (at most a third of it, for short protections).
DEFAULT_RENEW_BEFORE_SECONDS = 300.0


def protection_minutes_from_env() -> int:
    """TASK_PROTECTION_MINUTES, or the default; a bad value names the variable."""
    raw = os.environ.get(PROTECTION_MINUTES_ENV, "").strip()
    if not raw:
        return DEFAULT_PROTECTION_MINUTES
    try:
        minutes = int(raw)
    except ValueError:
        minutes = 0
    if not 1 <= minutes <= MAX_PROTECTION_MINUTES:
        raise ValueError(
            f"{PROTECTION_MINUTES_ENV}={raw!r} must be an integer in 1..{MAX_PROTECTION_MINUTES}"
        )
    return minutes


@dataclass
class TaskState:
    """What the worker processes of one task share: the protection's expiry and who is busy."""

    # When (on the shared monotonic clock) the protection last set lapses; None = not protected.
    protected_until: float | None = None
    # member id -> (pid, when it last reported busy). Idle members are simply absent.
    busy: dict[str, tuple[int, float]] = field(default_factory=dict)

    @classmethod
    def loads(cls, text: str) -> TaskState:
        """Parse the state file; an empty or damaged file is a fresh state."""
        try:
            raw = json.loads(text) if text.strip() else {}
            busy = {k: (int(v[0]), float(v[1])) for k, v in raw.get("busy", {}).items()}
            until = raw.get("protected_until")
            return cls(None if until is None else float(until), busy)
        except (ValueError, TypeError, AttributeError, IndexError):
            return cls()

    def dumps(self) -> str:
        """The state file's text."""
        return json.dumps({"protected_until": self.protected_until, "busy": self.busy})

    def mark(self, member: str, busy: bool, now: float) -> None:
        """Record whether one process holds jobs right now."""
        if busy:
            self.busy[member] = (os.getpid(), now)
        else:
            self.busy.pop(member, None)

    def forget_gone(self, silent_since: float) -> None:
        """Drop busy marks of processes that died, or went silent for a whole protection period
        (killed without a chance to clear their mark), so they cannot pin the task forever."""
        self.busy = {
            m: (pid, seen)
            for m, (pid, seen) in self.busy.items()
            if seen >= silent_since and pid_alive(pid)
        }


class TaskProtection:
    """Scale-in protection for the ECS task while any of its worker processes holds jobs."""

    def __init__(
        self,
        agent_uri: str | None = None,
        *,
        expires_in_minutes: int | None = None,
        renew_before_seconds: float | None = None,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        state_path: Path | None = None,
    ) -> None:
        """Read the agent URI from `ECS_AGENT_URI` unless given; without one every call is a no-op.

        `clock` returns monotonic seconds shared by the task's processes (CLOCK_MONOTONIC is
        system-wide); tests inject one instead of sleeping. `state_path` is the file the task's
        processes share (default: one per agent URI in the temp directory).
        `expires_in_minutes` defaults to TASK_PROTECTION_MINUTES (15 when unset).
        """
        if expires_in_minutes is None:
            expires_in_minutes = protection_minutes_from_env()
        if not 1 <= expires_in_minutes <= MAX_PROTECTION_MINUTES:
            raise ValueError("expires_in_minutes must be between 1 and 2880 (the agent's limits)")
        if renew_before_seconds is None:
            renew_before_seconds = min(DEFAULT_RENEW_BEFORE_SECONDS, expires_in_minutes * 20.0)
        if renew_before_seconds >= expires_in_minutes * 60:
            raise ValueError("renew_before_seconds must be shorter than the protection itself")
        uri = agent_uri if agent_uri is not None else os.environ.get("ECS_AGENT_URI")
        self._url = uri.rstrip("/") + PROTECTION_PATH if uri else None
        self._state_path = state_path or (default_state_path(self._url) if self._url else None)
        self._expires_in_minutes = expires_in_minutes
        self._renew_before = renew_before_seconds
        self._clock = clock
        self._owns_client = client is None
        self._client = client
        # With the pid, names this process's mark (the broker may be built before a fork).
        self._token = uuid.uuid4().hex[:12]
        # The task's protection expiry as of this process's last update.
        self._protected_until: float | None = None
        # Set by release(): the task is stopping and must not be protected again.
        self._released = False

    @property
    def enabled(self) -> bool:
        """False outside ECS (no agent URI): every call is then a no-op."""
        return self._url is not None

    @property
    def protected(self) -> bool:
        """Whether the task was protected as of this process's last update."""
        return self._protected_until is not None and self._clock() < self._protected_until

    async def update(self, busy: bool) -> None:
        """Record this process as busy or idle, then protect the task while any process is busy
        (renewing near expiry) and clear it once none is; never raises."""
        if not self.enabled or self._released:
            return
        try:
            async with self._shared_state() as state:
                await self._reconcile(state, busy)
        except (OSError, TimeoutError) as exc:
            # Same stance as a failing agent: the next heartbeat retries; a missed protection
            # costs at most a job handed back on scale-in, never a lost job.
            logger.warning("ECS task protection state %s unusable: %s", self._state_path, exc)

    async def release(self) -> None:
        """On SIGTERM: clear the task's protection now, whoever is busy, and never renew it.

        Every process of the task gets the SIGTERM, so no sibling's busy mark is worth keeping:
        the task stops at stopTimeout regardless, and a protection left set would only make the
        next deployment or scale-in wait for its expiry on a task that is already gone.
        """
        if not self.enabled or self._released:
            return
        self._released = True
        try:
            async with self._shared_state() as state:
                state.busy.clear()
                if state.protected_until is not None and await self._set(False):
                    state.protected_until = None
                self._protected_until = state.protected_until
        except (OSError, TimeoutError) as exc:
            logger.warning("ECS task protection state %s unusable: %s", self._state_path, exc)

    @property
    def expires_in_minutes(self) -> int:
        """The bound of one protection (renewed while busy)."""
        return self._expires_in_minutes

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._client is not None and self._owns_client:
            await self._client.aclose()
        self._client = None

    async def _reconcile(self, state: TaskState, busy: bool) -> None:
        now = self._clock()
        state.mark(f"{os.getpid()}-{self._token}", busy, now)
        state.forget_gone(silent_since=now - self._expires_in_minutes * 60)
        if state.busy:
            if self._needs_protection(state, now) and await self._set(True):
                state.protected_until = now + self._expires_in_minutes * 60
        elif state.protected_until is not None and await self._set(False):
            state.protected_until = None
        self._protected_until = state.protected_until

    def _needs_protection(self, state: TaskState, now: float) -> bool:
        if state.protected_until is None:
            return True
        return now >= state.protected_until - self._renew_before

    @contextlib.asynccontextmanager
    async def _shared_state(self) -> AsyncIterator[TaskState]:
        """The task's state, read and written back under an exclusive lock held throughout, so
        two processes never decide on stale views (the lock spans the agent call)."""
        assert self._state_path is not None  # enabled implies a path
        with self._state_path.open("a+", encoding="utf-8") as handle:
            await _lock(handle)
            try:
                handle.seek(0)
                state = TaskState.loads(handle.read())
                yield state
                handle.seek(0)
                handle.truncate()
                handle.write(state.dumps())
                handle.flush()
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    async def _set(self, enabled: bool) -> bool:
        body: dict[str, Any] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = self._expires_in_minutes
        import httpx  # here: only a task on ECS calls its agent, and httpx is slow to import

        try:
            response = await self._http().put(self._url or "", json=body)
            response.raise_for_status()
            _raise_for_agent_failure(response)
        except (httpx.HTTPError, ValueError) as exc:
            # A failing agent must not crash a worker: the next heartbeat retries, and the worst
            # case of a missed protection is a job handed back on scale-in, not a lost job.
            logger.warning("ECS task protection update (enabled=%s) failed: %s", enabled, exc)
            return False
        logger.debug("ECS task protection set to %s", enabled)
        return True

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx  # see _set

            self._client = httpx.AsyncClient(timeout=AGENT_TIMEOUT_SECONDS)
        return self._client


def default_state_path(agent_url: str) -> Path:
    """The state file of the task behind `agent_url` (each task's agent URI is its own)."""
    digest = hashlib.sha256(agent_url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"jobqueue-task-protection-{digest}.json"


async def _lock(handle: TextIO) -> None:
    """Take the exclusive lock without blocking the event loop (polls; cancellation-safe)."""
    deadline = time.monotonic() + STATE_LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise TimeoutError("another worker process holds the state lock") from None
            await asyncio.sleep(STATE_LOCK_POLL_SECONDS)
        else:
            return


def _raise_for_agent_failure(response: httpx.Response) -> None:
    """The agent may answer 200 with a `failure` or `error` object; treat those as errors."""
    try:
        payload = response.json()
    except ValueError:
        return
    if isinstance(payload, dict):
        problem = payload.get("failure") or payload.get("error")
        if problem:
            raise ValueError(f"agent reported {problem}")
