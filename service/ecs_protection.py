"""ECS task scale-in protection while a worker task holds jobs.

Worker autoscaling scales in on a queue metric, which knows nothing about which task is busy.
Without protection ECS may stop a task in the middle of a long job; the job would survive (it is
handed back on SIGTERM) but its work so far would be wasted. The ECS agent inside every task
exposes `$ECS_AGENT_URI/task-protection/v1/state`: a busy task marks itself protected, an idle one
clears the mark, and scale-in then only picks idle tasks.

The protection expires on its own (`ExpiresInMinutes`), so a worker that hangs or loses its agent
cannot pin a task forever; while busy we renew it shortly before it lapses.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import httpx

logger = logging.getLogger(__name__)

PROTECTION_PATH = "/task-protection/v1/state"
# The agent answers locally; a slow answer must not stall the heartbeat that calls us.
AGENT_TIMEOUT_SECONDS = 5.0


class TaskProtection:
    """Scale-in protection for the ECS task while this worker holds jobs."""

    def __init__(
        self,
        agent_uri: str | None = None,
        expires_in_minutes: int = 15,
        renew_before_seconds: float = 300.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Read the agent URI from `ECS_AGENT_URI` unless given; without one every call is a no-op.

        `clock` returns monotonic seconds; tests inject one instead of sleeping.
        """
        if not 1 <= expires_in_minutes <= 2880:
            raise ValueError("expires_in_minutes must be between 1 and 2880 (the agent's limits)")
        if renew_before_seconds >= expires_in_minutes * 60:
            raise ValueError("renew_before_seconds must be shorter than the protection itself")
        uri = agent_uri if agent_uri is not None else os.environ.get("ECS_AGENT_URI")
        self._url = uri.rstrip("/") + PROTECTION_PATH if uri else None
        self._expires_in_minutes = expires_in_minutes
        self._renew_before = renew_before_seconds
        self._clock = clock
        self._owns_client = client is None
        self._client = client
        # When (on our clock) the protection we last set lapses; None means "not protected".
        self._protected_until: float | None = None

    @property
    def enabled(self) -> bool:
        """False outside ECS (no agent URI): every call is then a no-op."""
        return self._url is not None

    @property
    def protected(self) -> bool:
        """Whether this task believes it is currently protected."""
        return self._protected_until is not None and self._clock() < self._protected_until

    async def update(self, busy: bool) -> None:
        """Protect while busy (renewing near expiry), unprotect when idle; never raises."""
        if not self.enabled:
            return
        if busy and self._needs_protection():
            await self._set(True)
        elif not busy and self._protected_until is not None:
            await self._set(False)

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._client is not None and self._owns_client:
            await self._client.aclose()
        self._client = None

    def _needs_protection(self) -> bool:
        if self._protected_until is None:
            return True
        return self._clock() >= self._protected_until - self._renew_before

    async def _set(self, enabled: bool) -> None:
        body: dict[str, Any] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = self._expires_in_minutes
        started = self._clock()
        try:
            response = await self._http().put(self._url or "", json=body)
            response.raise_for_status()
            _raise_for_agent_failure(response)
        except (httpx.HTTPError, ValueError) as exc:
            # A failing agent must not crash a worker: the next heartbeat retries, and the worst
            # case of a missed protection is a job handed back on scale-in, not a lost job.
            logger.warning("ECS task protection update (enabled=%s) failed: %s", enabled, exc)
            return
        self._protected_until = started + self._expires_in_minutes * 60 if enabled else None
        logger.debug("ECS task protection set to %s", enabled)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=AGENT_TIMEOUT_SECONDS)
        return self._client


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
