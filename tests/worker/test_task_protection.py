"""ECS task scale-in protection against a real local HTTP server standing in for the ECS agent.

moto does not implement the agent's task-protection endpoint, so a tiny ASGI app served by uvicorn
on 127.0.0.1 records what the worker sends, the way the agent would receive it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from service.ecs_protection import TaskProtection, default_state_path

TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/jobqueue-dev/0123456789abcdef"


@dataclass
class FakeAgent:
    """What the fake agent received, and how it should answer next."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    status_code: int = 200
    failure: bool = False


@dataclass
class FakeClock:
    """A monotonic clock the test moves by hand instead of sleeping."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def _agent_app(agent: FakeAgent) -> FastAPI:
    app = FastAPI()

    @app.put("/task-protection/v1/state")
    async def put_state(request: Request) -> JSONResponse:
        body = await request.json()
        agent.requests.append(body)
        if agent.status_code != 200:
            return JSONResponse({"error": {"Code": "ServerException"}}, agent.status_code)
        if agent.failure:
            return JSONResponse({"failure": {"Arn": TASK_ARN, "Reason": "TASK_NOT_VALID"}})
        state = {"ProtectionEnabled": body["ProtectionEnabled"], "TaskArn": TASK_ARN}
        return JSONResponse({"protection": state})

    return app


@pytest.fixture(scope="module")
def agent_server() -> Iterator[FakeAgent]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    agent = FakeAgent(url=f"http://127.0.0.1:{port}")
    config = uvicorn.Config(
        _agent_app(agent), log_level="warning", lifespan="off", ws="none", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "fake ECS agent did not start"
        time.sleep(0.01)
    yield agent
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(autouse=True)
def own_temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own task: the shared state file lives in the (default) temp dir."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.fixture
def agent(agent_server: FakeAgent) -> FakeAgent:
    agent_server.requests.clear()
    agent_server.status_code = 200
    agent_server.failure = False
    return agent_server


async def test_busy_worker_sets_protection_with_expiry(agent: FakeAgent) -> None:
    protection = TaskProtection(agent.url, expires_in_minutes=15, clock=FakeClock())
    await protection.update(busy=True)
    await protection.aclose()
    assert agent.requests == [{"ProtectionEnabled": True, "ExpiresInMinutes": 15}]
    assert protection.protected


async def test_protection_is_not_resent_on_every_heartbeat(agent: FakeAgent) -> None:
    clock = FakeClock()
    protection = TaskProtection(agent.url, expires_in_minutes=15, clock=clock)
    await protection.update(busy=True)
    clock.now += 60
    await protection.update(busy=True)
    await protection.aclose()
    assert len(agent.requests) == 1


async def test_protection_is_renewed_when_near_expiry(agent: FakeAgent) -> None:
    clock = FakeClock()
    protection = TaskProtection(
        agent.url, expires_in_minutes=15, renew_before_seconds=300, clock=clock
    )
    await protection.update(busy=True)
    clock.now += 15 * 60 - 300 - 1  # one second before the renewal window opens
    await protection.update(busy=True)
    assert len(agent.requests) == 1
    clock.now += 1
    await protection.update(busy=True)
    await protection.aclose()
    assert agent.requests == [{"ProtectionEnabled": True, "ExpiresInMinutes": 15}] * 2


async def test_idle_worker_clears_protection_once(agent: FakeAgent) -> None:
    clock = FakeClock()
    protection = TaskProtection(agent.url, clock=clock)
    await protection.update(busy=True)
    await protection.update(busy=False)
    await protection.update(busy=False)
    await protection.aclose()
    assert agent.requests == [
        {"ProtectionEnabled": True, "ExpiresInMinutes": 15},
        {"ProtectionEnabled": False},
    ]
    assert not protection.protected


async def test_idle_worker_that_was_never_protected_sends_nothing(agent: FakeAgent) -> None:
    protection = TaskProtection(agent.url, clock=FakeClock())
    await protection.update(busy=False)
    await protection.aclose()
    assert agent.requests == []


async def test_without_ecs_agent_uri_every_call_is_a_noop(
    agent: FakeAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ECS_AGENT_URI", raising=False)
    protection = TaskProtection(clock=FakeClock())
    assert not protection.enabled
    await protection.update(busy=True)
    await protection.update(busy=False)
    await protection.aclose()
    assert agent.requests == []


async def test_agent_uri_is_read_from_the_environment(
    agent: FakeAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECS_AGENT_URI", agent.url + "/")
    protection = TaskProtection(clock=FakeClock())
    assert protection.enabled
    await protection.update(busy=True)
    await protection.aclose()
    assert agent.requests == [{"ProtectionEnabled": True, "ExpiresInMinutes": 15}]


async def test_agent_500_is_logged_not_raised_and_retried_next_beat(
    agent: FakeAgent, caplog: pytest.LogCaptureFixture
) -> None:
    agent.status_code = 500
    protection = TaskProtection(agent.url, clock=FakeClock())
    with caplog.at_level(logging.WARNING, logger="service.ecs_protection"):
        await protection.update(busy=True)
    assert not protection.protected
    assert "ECS task protection update (enabled=True) failed" in caplog.text
    agent.status_code = 200
    await protection.update(busy=True)
    await protection.aclose()
    assert len(agent.requests) == 2
    assert protection.protected


async def test_agent_failure_body_counts_as_not_protected(
    agent: FakeAgent, caplog: pytest.LogCaptureFixture
) -> None:
    agent.failure = True
    protection = TaskProtection(agent.url, clock=FakeClock())
    with caplog.at_level(logging.WARNING, logger="service.ecs_protection"):
        await protection.update(busy=True)
    await protection.aclose()
    assert not protection.protected
    assert "TASK_NOT_VALID" in caplog.text


async def test_unreachable_agent_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    protection = TaskProtection(f"http://127.0.0.1:{port}", clock=FakeClock())
    with caplog.at_level(logging.WARNING, logger="service.ecs_protection"):
        await protection.update(busy=True)
    await protection.aclose()
    assert not protection.protected
    assert "failed" in caplog.text


def test_renewal_window_must_be_shorter_than_the_protection() -> None:
    with pytest.raises(ValueError, match="renew_before_seconds"):
        TaskProtection("http://127.0.0.1:1", expires_in_minutes=1, renew_before_seconds=60)


# --- one task, several worker processes ----------------------------------------------------------


async def test_an_idle_process_does_not_clear_a_busy_siblings_protection(agent: FakeAgent) -> None:
    clock = FakeClock()
    first, second = (TaskProtection(agent.url, clock=clock) for _ in range(2))
    await first.update(busy=True)
    await second.update(busy=True)  # already protected for the task: nothing to send
    await first.update(busy=False)  # the sibling still holds jobs: keep the protection
    assert agent.requests == [{"ProtectionEnabled": True, "ExpiresInMinutes": 15}]
    assert first.protected
    await second.update(busy=False)  # nobody holds jobs now
    await first.aclose()
    await second.aclose()
    assert agent.requests == [
        {"ProtectionEnabled": True, "ExpiresInMinutes": 15},
        {"ProtectionEnabled": False},
    ]
    assert not second.protected


async def test_a_busy_sibling_renews_what_another_process_set(agent: FakeAgent) -> None:
    clock = FakeClock()
    first, second = (TaskProtection(agent.url, clock=clock) for _ in range(2))
    await first.update(busy=True)
    await second.update(busy=True)
    await first.update(busy=False)  # first is done; second still runs a long job
    clock.now += 15 * 60 - 300  # the protection `first` set enters its renewal window
    await second.update(busy=True)
    await first.aclose()
    await second.aclose()
    assert agent.requests == [{"ProtectionEnabled": True, "ExpiresInMinutes": 15}] * 2
    assert second.protected


def _busy_sibling(agent_url: str, state_path: Path) -> subprocess.Popen[str]:
    """Another worker process of the same task, busy and then left running."""
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from service.ecs_protection import TaskProtection\n"
        "p = TaskProtection(sys.argv[1], state_path=Path(sys.argv[2]))\n"
        "asyncio.run(p.update(busy=True))\n"
        "print('busy', flush=True)\n"
        "sys.stdin.read()\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", script, agent_url, str(state_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


async def test_a_killed_siblings_mark_does_not_pin_the_task(
    agent: FakeAgent, own_temp_dir: Path
) -> None:
    state_path = own_temp_dir / "task.json"
    with _busy_sibling(agent.url, state_path) as sibling:
        try:
            assert sibling.stdout is not None
            assert sibling.stdout.readline().strip() == "busy"
            me = TaskProtection(agent.url, state_path=state_path)
            await me.update(busy=False)
            assert agent.requests == [{"ProtectionEnabled": True, "ExpiresInMinutes": 15}]
            os.kill(sibling.pid, signal.SIGKILL)  # OOM-killed: no chance to clear its mark
            sibling.wait(timeout=10)
            await me.update(busy=False)
            await me.aclose()
        finally:
            if sibling.poll() is None:
                sibling.kill()
    assert agent.requests[-1] == {"ProtectionEnabled": False}
    assert json.loads(state_path.read_text()) == {"protected_until": None, "busy": {}}


async def test_a_mark_silent_for_a_whole_protection_period_is_forgotten(agent: FakeAgent) -> None:
    clock = FakeClock()
    hung, healthy = (TaskProtection(agent.url, clock=clock) for _ in range(2))
    await hung.update(busy=True)
    clock.now += 15 * 60 + 1  # `hung` never reported again (and the agent let it lapse)
    await healthy.update(busy=False)
    await hung.aclose()
    await healthy.aclose()
    assert agent.requests[-1] == {"ProtectionEnabled": False}


async def test_a_damaged_state_file_counts_as_a_fresh_task(agent: FakeAgent) -> None:
    default_state_path(agent.url + "/task-protection/v1/state").write_text("{not json")
    protection = TaskProtection(agent.url, clock=FakeClock())
    await protection.update(busy=True)
    await protection.aclose()
    assert agent.requests == [{"ProtectionEnabled": True, "ExpiresInMinutes": 15}]


async def test_an_unwritable_state_file_is_logged_not_raised(
    agent: FakeAgent, own_temp_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    protection = TaskProtection(agent.url, state_path=own_temp_dir / "missing" / "task.json")
    with caplog.at_level(logging.WARNING, logger="service.ecs_protection"):
        await protection.update(busy=True)
    await protection.aclose()
    assert "state" in caplog.text
    assert agent.requests == []


# --- the bound, and SIGTERM -------------------------------------------------------------------


def test_the_bound_comes_from_the_stack_through_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """infra sets TASK_PROTECTION_MINUTES from workerProtectionMinutes."""
    monkeypatch.setenv("TASK_PROTECTION_MINUTES", "30")
    assert TaskProtection("http://agent").expires_in_minutes == 30
    monkeypatch.delenv("TASK_PROTECTION_MINUTES")
    assert TaskProtection("http://agent").expires_in_minutes == 15
    # A one-minute bound still renews before it lapses (renewal window at most a third).
    monkeypatch.setenv("TASK_PROTECTION_MINUTES", "1")
    assert TaskProtection("http://agent").expires_in_minutes == 1


@pytest.mark.parametrize("value", ["0", "2881", "soon"])
def test_a_bad_bound_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("TASK_PROTECTION_MINUTES", value)
    with pytest.raises(
        ValueError, match=r"TASK_PROTECTION_MINUTES=.* must be an integer in 1\.\.2880"
    ):
        TaskProtection("http://agent")


async def test_release_on_sigterm_clears_protection_even_while_a_sibling_is_busy(
    agent: FakeAgent,
) -> None:
    clock = FakeClock()
    state = default_state_path(agent.url + "/task-protection/v1/state")
    first = TaskProtection(agent.url, expires_in_minutes=15, clock=clock, state_path=state)
    second = TaskProtection(agent.url, expires_in_minutes=15, clock=clock, state_path=state)
    await first.update(busy=True)
    await second.update(busy=True)
    assert agent.requests == [{"ProtectionEnabled": True, "ExpiresInMinutes": 15}]

    await first.release()  # SIGTERM reaches every process of the task
    assert agent.requests[-1] == {"ProtectionEnabled": False}
    assert not first.protected

    # Draining: the heartbeat still says busy while jobs are handed back, but nothing renews.
    clock.now += 15 * 60
    await first.update(busy=True)
    await first.release()  # idempotent
    assert len(agent.requests) == 2
    await first.aclose()
    await second.aclose()


async def test_release_of_an_unprotected_task_sends_nothing(agent: FakeAgent) -> None:
    protection = TaskProtection(agent.url, expires_in_minutes=15, clock=FakeClock())
    await protection.release()
    await protection.update(busy=True)
    await protection.aclose()
    assert agent.requests == []
