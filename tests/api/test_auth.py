"""Every route but /healthz and /readyz needs a configured key, as X-API-Key or Bearer; the app
refuses to start without keys; placeholder keys are refused outside local and test."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from api_harness import API_KEY, OTHER_KEY, app_settings
from fastapi import FastAPI
from pydantic import ValidationError

from service.api.app import MissingApiKeysError, create_app
from service.api.deps import key_matches
from service.settings import Settings

PUBLIC = {"/healthz", "/readyz"}


def protected_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every documented operation except the public probes."""
    return [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path not in PUBLIC
        for method in operations
    ]


def concrete(path: str) -> str:
    return path.replace("{id}", "some-id").replace("{type}", "noop")


async def test_every_protected_route_is_401_without_a_key(
    app: FastAPI, anon: httpx.AsyncClient
) -> None:
    routes = protected_routes(app)
    assert len(routes) >= 20  # the test sees the real route table
    for method, path in routes:
        assert app.openapi()["paths"][path][method.lower()]["security"], (method, path)
    for method, path in routes:
        response = await anon.request(method, concrete(path), json={"type": "noop"})
        assert response.status_code == 401, (method, path)
        assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": "wrong"},
        {"X-API-Key": API_KEY + "x"},
        {"X-API-Key": API_KEY[:-1]},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {API_KEY}"},
        {"X-API-Key": ""},
    ],
)
async def test_wrong_keys_are_401_with_the_same_message(
    anon: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    missing = (await anon.get("/jobs/stats")).json()
    response = await anon.get("/jobs/stats", headers=headers)
    assert response.status_code == 401
    assert response.json() == missing  # no hint which part was wrong
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": API_KEY},
        {"X-API-Key": OTHER_KEY},
        {"Authorization": f"Bearer {API_KEY}"},
        {"Authorization": f"bearer {OTHER_KEY}"},
    ],
)
async def test_any_configured_key_works_as_header_or_bearer(
    anon: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    assert (await anon.get("/jobs/stats", headers=headers)).status_code == 200


async def test_liveness_and_readiness_need_no_key(anon: httpx.AsyncClient) -> None:
    assert (await anon.get("/healthz")).json() == {"status": "ok"}
    ready = await anon.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


async def test_openapi_documents_both_key_schemes(anon: httpx.AsyncClient) -> None:
    schemes = (await anon.get("/openapi.json")).json()["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["Bearer"]["scheme"] == "bearer"


def test_app_refuses_to_start_without_keys(redis_url: str) -> None:
    with pytest.raises(MissingApiKeysError, match="API_KEYS"):
        create_app(app_settings(redis_url, "q", api_keys=None))


def test_keys_file_is_read_with_comments_skipped(redis_url: str, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# rotated 2026-01\nfile-key-0123456789abc\n\n")
    settings = app_settings(redis_url, "q", api_keys=None, api_keys_file=keys)
    assert settings.api_key_values() == ["file-key-0123456789abc"]
    assert create_app(settings).state.api_keys == [b"file-key-0123456789abc"]


@pytest.mark.parametrize("key", ["changeme", "short", "secret,good-key-0123456789abc"])
def test_placeholder_keys_are_refused_outside_local_and_test(key: str) -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(environment="prod", api_keys=key, shutdown_grace_seconds=60)
    Settings(environment="local", api_keys=key)  # a developer may use anything


def test_key_check_compares_against_every_key() -> None:
    keys = [b"first-key-0123456789", b"second-key-012345678"]
    assert key_matches("second-key-012345678", keys)
    assert not key_matches("second-key-01234567", keys)
    assert not key_matches("", keys)
    assert not key_matches("\udcff", keys)  # undecodable input must not raise
