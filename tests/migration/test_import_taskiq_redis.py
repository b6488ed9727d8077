"""Issue 20's migration: real taskiq-redis producers fill a ListQueueBroker list and a
RedisStreamBroker stream; `jobqueue import-taskiq-redis` moves them while our worker runs, is
SIGKILLed once and re-run; every task runs exactly once and its result is read by the
producer's own task handle through RedisAsyncResultBackend."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from taskiq import AsyncTaskiqTask
from taskiq.message import BrokerMessage, TaskiqMessage
from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend, RedisStreamBroker

from service.jobs import load_job_types
from service.migration.taskiq_redis_import import Source, TaskiqRedisImport
from service.queue.queue import JobQueue
from service.queue.states import JobState, Priority
from service.settings import Settings
from service.worker.taskiq_broker import spec_from_message
from tests.migration.migrated_tasks import runs_key
from tests.support.workers import REPO, all_done, running_worker, wait_until, worker_env

TASKS = 1_000
MODULES = "tests.migration.migrated_tasks"


def import_command(redis_url: str, kind: str, name: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "service.cli", "import-taskiq-redis", "--from", redis_url,
            f"--{kind}", name, *extra]  # fmt: skip


@pytest.fixture
async def source_names(redis: Redis) -> AsyncIterator[dict[str, str]]:
    """Names of the taskiq-redis list, stream and result prefix; their keys deleted after."""
    tag = uuid.uuid4().hex[:10]
    names = {"list": f"tq-list-{tag}", "stream": f"tq-stream-{tag}", "results": f"tq-res-{tag}"}
    yield names
    await redis.delete(names["list"], names["stream"])
    async for key in redis.scan_iter(match=names["results"] + ":*", count=1000):
        await redis.delete(key)


def producers(redis_url: str, names: dict[str, str]) -> tuple[ListQueueBroker, RedisStreamBroker]:
    def backend() -> RedisAsyncResultBackend[Any]:
        return RedisAsyncResultBackend(redis_url, prefix_str=names["results"])

    listed = ListQueueBroker(redis_url, queue_name=names["list"]).with_result_backend(backend())
    streamed = RedisStreamBroker(redis_url, queue_name=names["stream"]).with_result_backend(
        backend()
    )
    return listed, streamed


async def kick_all(broker: Any) -> list[AsyncTaskiqTask[Any]]:
    """TASKS messages as a taskiq-redis user sends them; every tenth high priority, every
    seventh with taskiq's retry labels."""

    @broker.task(task_name="migrated-echo")
    async def echo(data: dict[str, int]) -> dict[str, int]:  # runs in our worker, not here
        raise AssertionError("the taskiq-redis side never runs it")

    tasks = []
    for n in range(TASKS):
        kicker = echo.kicker()
        if n % 10 == 0:
            kicker = kicker.with_labels(priority="high")
        if n % 7 == 0:
            kicker = kicker.with_labels(retry_on_error=True, max_retries=4)
        tasks.append(await kicker.kiq(data={"n": n}))
    return tasks


async def kill_halfway(command: list[str], env: dict[str, str], left: Any, log: Path) -> int:
    """Start the import, SIGKILL it once some but not all messages have moved; returns how
    many were still waiting at the kill."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while (remaining := await left()) >= TASKS:
            assert time.monotonic() < deadline and process.poll() is None, log.read_text()
            await asyncio.sleep(0.002)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL, "the import ended before it could be killed"
    return remaining


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_import_killed_once_and_rerun_runs_every_task_exactly_once(
    redis_url: str, redis: Redis, queue: JobQueue, queue_name: str,
    source_names: dict[str, str], tmp_path: Path,
) -> None:  # fmt: skip
    listed, streamed = producers(redis_url, source_names)
    await listed.startup()
    await streamed.startup()  # declares the "taskiq" group, as a taskiq-redis app does
    try:
        handles = {"list": await kick_all(listed), "stream": await kick_all(streamed)}
        raw = Redis.from_url(redis_url)
        waiting = {
            "list": lambda: raw.llen(source_names["list"]),
            "stream": lambda: raw.xlen(source_names["stream"]),
        }
        env = worker_env(
            redis_url, queue_name, job_modules=MODULES, worker_concurrency=50,
            result_backend="taskiq-redis", result_key_prefix=source_names["results"],
        )  # fmt: skip
        with running_worker(env, tmp_path / "worker.log"):
            for kind in ("list", "stream"):
                command = import_command(redis_url, kind, source_names[kind], "--batch", "10")
                remaining = await kill_halfway(
                    command, env, waiting[kind], tmp_path / f"{kind}-killed.log"
                )
                assert 0 < remaining < TASKS
                rerun = subprocess.run(
                    command, env=env, cwd=REPO, capture_output=True, timeout=120, check=False
                )
                assert rerun.returncode == 0, rerun.stdout + rerun.stderr
                assert b"left behind 0" in rerun.stdout
                assert await waiting[kind]() == 0
            ids = [task.task_id for kind in handles for task in handles[kind]]
            assert len(set(ids)) == 2 * TASKS
            await wait_until(lambda: all_done(queue, ids), timeout=120, interval=0.2)
        runs = await redis.hgetall(runs_key(queue_name))
        assert runs == dict.fromkeys(ids, "1"), "a task was lost or run twice"
        jobs = {job.id: job for job in await queue.get_many(ids)}
        assert {job.state for job in jobs.values()} == {JobState.COMPLETED}
        for kind, tasks in handles.items():
            for n, task in enumerate(tasks):
                job = jobs[task.task_id]
                assert job.priority is (Priority.HIGH if n % 10 == 0 else Priority.NORMAL)
                assert job.max_attempts == (5 if n % 7 == 0 else 3), kind
                result = await task.wait_result(timeout=10)
                assert not result.is_err
                assert result.return_value == {"n": n, "double": 2 * n}
        pending = await raw.xpending(source_names["stream"], "taskiq")
        assert pending["pending"] == 0
        await raw.aclose()
    finally:
        await listed.shutdown()
        await streamed.shutdown()


async def test_a_batch_enqueued_but_not_removed_is_not_enqueued_again(
    redis_url: str, redis: Redis, queue: JobQueue, queue_name: str,
    source_names: dict[str, str],
) -> None:  # fmt: skip
    """The crash between enqueue and removal, made on purpose: the moved messages are put
    back into the source as they were, and the re-run only removes them."""
    listed, _ = producers(redis_url, source_names)
    await listed.startup()
    raw = Redis.from_url(redis_url)
    try:
        name = source_names["list"]
        echo = listed.register_task(lambda data: data, task_name="migrated-echo")
        for n in range(30):
            await echo.kiq(data={"n": n})
        before = await raw.lrange(name, 0, -1)
        settings = Settings(redis_url=redis_url, queue_name=queue_name, key_prefix="jqtest")
        registry = load_job_types((MODULES,))

        def importer() -> TaskiqRedisImport:
            return TaskiqRedisImport(raw, Source("list", name), queue=queue, settings=settings,
                                     registry=registry, batch_size=7)  # fmt: skip

        first = await importer().run()
        assert (first.imported, first.already_imported, first.left_behind) == (30, 0, 0)
        await raw.rpush(name, *reversed(before))  # as if the removals never happened
        second = await importer().run()
        assert (second.imported, second.already_imported, second.left_behind) == (0, 30, 0)
        assert await raw.llen(name) == 0
        assert (await queue.counts()).by_state[JobState.PENDING] == 30
    finally:
        await raw.aclose()
        await listed.shutdown()


async def test_unknown_task_names_are_refused_before_anything_moves(
    redis_url: str, queue_name: str, source_names: dict[str, str]
) -> None:
    listed, _ = producers(redis_url, source_names)
    await listed.startup()
    try:
        for task_name in ("migrated-echo", "legacy.tasks:resize", "legacy.tasks:resize"):
            await listed.register_task(lambda: None, task_name=task_name).kiq()
        env = worker_env(redis_url, queue_name, job_modules=MODULES)
        command = import_command(redis_url, "list", source_names["list"])
        dry = subprocess.run(
            [*command, "--dry-run"], env=env, cwd=REPO, capture_output=True, check=False
        )
        assert dry.returncode == 0
        assert b"2  legacy.tasks:resize" in dry.stdout
        assert b"1  migrated-echo" in dry.stdout
        refused = subprocess.run(command, env=env, cwd=REPO, capture_output=True, check=False)
        assert refused.returncode == 2
        assert b"legacy.tasks:resize" in refused.stderr
        raw = Redis.from_url(redis_url)
        assert await raw.llen(source_names["list"]) == 3
        await raw.aclose()
    finally:
        await listed.shutdown()


@pytest.mark.parametrize(
    ("labels", "attempts"),
    [
        ({"retry_on_error": True, "max_retries": 4}, 5),
        ({"retry_on_error": "true", "max_retries": "4", "_retries": "3"}, 2),
        ({"retry_on_error": True}, 4),  # taskiq's default of 3 retries
        ({"retry_on_error": False, "max_retries": 4}, 1),
        ({}, 3),  # the job type's default
    ],
)
def test_taskiq_retry_labels_become_attempts(labels: dict[str, Any], attempts: int) -> None:
    message = TaskiqMessage(
        task_id="t1", task_name="migrated-echo", labels=labels, args=[], kwargs={"data": {"n": 1}}
    )
    kicked = BrokerMessage(
        task_id="t1", task_name="migrated-echo",
        message=message.model_dump_json().encode(), labels=labels,
    )  # fmt: skip
    spec, _ = spec_from_message(kicked, Settings(), load_job_types((MODULES,)))
    assert spec.attempts == attempts
