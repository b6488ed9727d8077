"""FastAPI dependencies as `Annotated` aliases: the queue, the settings and the API-key check.

The Redis client and the queue are created by the app's lifespan and kept on `app.state`; a
route receives them through these aliases and never builds a connection itself.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.api.errors import ApiError
from service.queue.queue import JobQueue
from service.settings import Settings

# auto_error=False: a missing key must produce our 401 body, not FastAPI's default 403/401.
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey")
_bearer = HTTPBearer(auto_error=False, scheme_name="Bearer")


# The dependencies are `async def` though none awaits: FastAPI runs a plain `def` dependency
# in its thread pool, and the hop there and back cost every request two thread switches
# (about a tenth of one API process's enqueue rate, docs/benchmarks-http.md). None blocks:
# attribute reads, and a SHA-256 per configured key.


async def get_queue(request: Request) -> JobQueue:
    """The queue the app's lifespan opened."""
    queue: JobQueue = request.app.state.queue
    return queue


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


QueueDep = Annotated[JobQueue, Depends(get_queue)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def key_matches(presented: str, keys: list[bytes]) -> bool:
    """Constant-time check of `presented` against every configured key.

    Every key is compared even after a match, so the time taken says nothing about which key,
    or how much of one, was right. Digests are compared, not the keys: `compare_digest` may
    return early on a length mismatch, which would tell a guesser the key's length.
    """
    candidate = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, hashlib.sha256(key).digest())
    return matched


def has_valid_key(request: Request) -> bool:
    """Whether the request carries a configured key (for routes that are public but say more
    to a caller with a key)."""
    header_key = request.headers.get("x-api-key")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    presented = header_key or (token.strip() if scheme.lower() == "bearer" else None)
    return presented is not None and key_matches(presented, request.app.state.api_keys)


async def require_api_key(
    request: Request,
    header_key: Annotated[str | None, Security(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> None:
    """401 unless the request carries a configured key as `X-API-Key` or a Bearer token."""
    keys: list[bytes] = request.app.state.api_keys
    presented = header_key or (bearer.credentials if bearer else None)
    if presented is None or not key_matches(presented, keys):
        # One message for missing and wrong keys alike: no hint which part failed.
        raise ApiError(
            401,
            "unauthorized",
            "a valid API key is required (X-API-Key header or Authorization: Bearer)",
            headers={"WWW-Authenticate": 'Bearer realm="jobqueue"'},
        )


Authenticated = Depends(require_api_key)
