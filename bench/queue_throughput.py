"""Queue benchmark: our broker beside taskiq-redis's RedisStreamBroker, in one run.

For each broker, with the same worker settings (one worker process, 100 concurrent tasks):
- enqueue rate of N no-op jobs through taskiq's client API (`task.kiq()`, 100 in flight);
- Redis memory per queued job (INFO used_memory before/after, no worker running);
- end-to-end processing rate: one worker process drains the N queued jobs;
- Redis CPU per job (INFO cpu used_cpu_user + used_cpu_sys, before/after) while enqueueing and
  while processing, and the ceiling it projects for one Redis primary (one core busy);
- start latency p50/p99 with jobs arriving at a fixed rate (default 500/s) to an idle worker.
Ours also reports bulk enqueue (`JobQueue.enqueue_many`, one round trip per 1,000) and the
worker's start-up time: from spawning the process to its first job's code starting.

Run: `make bench` (or `uv run python -m bench.queue_throughput --jobs 20000`). It starts a
Redis server of its own on a free port (bench/private_redis.py), so the CPU counters are the
benchmark's alone; `--redis-url` uses another server instead (its CPU figures then include
whatever else runs there, and the listpack step, which needs CONFIG SET, is skipped). Bounded in
time: a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.private_redis import private_redis

REPO = Path(__file__).resolve().parents[1]
CONCURRENCY = 100


@dataclass
class Result:
    """Figures for one broker."""

    name: str
    enqueue_per_s: float = 0.0
    bulk_enqueue_per_s: float | None = None
    bytes_per_job: float = 0.0
    bytes_per_job_listpack: float | None = None
    process_per_s: float = 0.0
    # Redis CPU (µs) per job while enqueueing with kiq(), with enqueue_many, and processing.
    cpu_enqueue_us: float = 0.0
    cpu_bulk_us: float | None = None
    cpu_process_us: float = 0.0
    # Spawn of the worker process to its first job's code starting (s).
    startup_s: float | None = None
    latency_ms: list[float] = field(default_factory=list)
    # How long the producer's kiq() took in the latency run: the part of start latency spent
    # before the job reached Redis (and the wait for its reply).
    kiq_ms: list[float] = field(default_factory=list)

    def pct(self, q: float) -> float:
        """Start-latency percentile in ms."""
        return percentile(self.latency_ms, q)

    @property
    def cpu_per_job_us(self) -> float:
        """Redis CPU per job through its life: one enqueue (the cheaper path) and its
        processing."""
        enqueue = min(self.cpu_enqueue_us, self.cpu_bulk_us or self.cpu_enqueue_us)
        return enqueue + self.cpu_process_us

    @property
    def ceiling_per_s(self) -> float:
        """Jobs/s one Redis primary could carry at this CPU per job: Redis runs commands on one
        thread, so one core's second divided by the CPU each job costs it."""
        return 1e6 / self.cpu_per_job_us if self.cpu_per_job_us else float("nan")


def percentile(values: list[float], q: float) -> float:
    """The q-quantile of `values` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def timed(into: list[float], awaitable: Awaitable[Any]) -> Any:
    """Await, appending how long it took in ms to `into`."""
    started = time.perf_counter()
    try:
        return await awaitable
    finally:
        into.append((time.perf_counter() - started) * 1000)


async def used_memory(redis: Redis) -> int:
    """Server memory in bytes."""
    return int((await redis.info("memory"))["used_memory"])


async def used_cpu(redis: Redis) -> float:
    """CPU seconds the server has used (user + system), as INFO cpu counts them."""
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def cpu_per_job_us(redis: Redis, since: float, jobs: int) -> float:
    """Server CPU per job (µs) since the reading `since`."""
    return (await used_cpu(redis) - since) * 1e6 / jobs


async def run_in_flight(n: int, make: Callable[[], Awaitable[Any]], in_flight: int = 100) -> float:
    """Run `make()` n times with `in_flight` concurrent calls; returns seconds taken."""
    started = time.perf_counter()
    remaining = n

    async def lane(count: int) -> None:
        for _ in range(count):
            await make()

    per_lane, extra = divmod(remaining, in_flight)
    await asyncio.gather(*(lane(per_lane + (1 if i < extra else 0)) for i in range(in_flight)))
    return time.perf_counter() - started


def start_worker(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A worker process with its output in `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it lingers."""
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float) -> float:
    """Seconds until `check()` is true; raises after `timeout`."""
    started = time.perf_counter()
    while not await check():
        if time.perf_counter() - started > timeout:
            raise TimeoutError("benchmark step did not finish in time")
        await asyncio.sleep(0.01)
    return time.perf_counter() - started


async def paced(n_per_s: int, seconds: float, send: Callable[[], Awaitable[Any]]) -> None:
    """Call `send` at a fixed rate (ticks of 10 ms) for `seconds`."""
    tick, per_tick = 0.01, n_per_s / 100
    started, sent = time.perf_counter(), 0.0
    while (elapsed := time.perf_counter() - started) < seconds:
        due = int(elapsed / tick * per_tick) + 1
        while sent < due:
            await send()
            sent += 1
        await asyncio.sleep(tick - (elapsed % tick))


# --- ours ---------------------------------------------------------------------------------------

# `jobqueue worker` as production runs it (our batch receiver), and plain `taskiq worker` with
# taskiq's stock receiver, both on our broker: the difference is the receiver alone.
OURS_WORKERS = {
    "ours (`jobqueue worker`, JobReceiver)": [
        sys.executable, "-c", "import sys; from service.worker import run_workers; "
        "sys.exit(run_workers())",
    ],
    "ours (`taskiq worker`, stock Receiver)": [
        sys.executable, "-m", "taskiq", "worker", "service.worker:broker", "--workers", "1",
        "--max-async-tasks", str(CONCURRENCY), "--log-level", "WARNING",
    ],
}  # fmt: skip


async def bench_ours(
    name: str, command: list[str], url: str, jobs: int, rate: int, seconds: float, logs: Path,
    configurable: bool,
) -> Result:  # fmt: skip
    """Figures for our broker with one worker process started by `command`."""
    queue_name = "bench-" + uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "REDIS_URL": url,
        "QUEUE_NAME": queue_name,
        "KEY_PREFIX": "jqbench",
        "WORKER_CONCURRENCY": str(CONCURRENCY),
        "WORKER_COUNT": "1",
        "ENVIRONMENT": "test",
        "JOB_MODULES": "bench.stamp_job",
    }
    os.environ.update({k: env[k] for k in ("REDIS_URL", "QUEUE_NAME", "KEY_PREFIX", "JOB_MODULES")})
    from service.jobs.registry import REGISTRY
    from service.settings import Settings
    from service.worker.taskiq_broker import JobQueueBroker

    broker = JobQueueBroker(Settings(), registry=REGISTRY)
    await broker.startup()
    queue, redis = broker.queue, broker.queue.redis
    result = Result(name)
    noop_task, stamp_task = broker.find_task("noop"), broker.find_task("bench-stamp")
    assert noop_task is not None
    assert stamp_task is not None
    before, cpu = await used_memory(redis), await used_cpu(redis)
    took = await run_in_flight(jobs, lambda: noop_task.kiq(data={}))
    result.enqueue_per_s = jobs / took
    result.cpu_enqueue_us = await cpu_per_job_us(redis, cpu, jobs)
    result.bytes_per_job = (await used_memory(redis) - before) / jobs

    # The first job the worker runs reports how long after its spawn it started: critical, so
    # it runs before the queued no-ops, and stamped with the clock just before the spawn.
    first = stamp_task.kicker().with_labels(priority="critical")
    cpu = await used_cpu(redis)
    first_id = (await first.kiq(data={"sent": time.time()})).task_id
    worker = start_worker(command, env, logs / f"ours-{len(command)}.log")
    try:
        await wait_for(lambda: _zcard_at_least(redis, queue.keys.workers, 1), 30)
        started = time.perf_counter()
        # Read while the drain runs: finished first, it would be trimmed by retention (10,000
        # completed jobs kept) before the drain ends.
        result.startup_s = await _reported_latency_s(queue, first_id)
        await wait_for(lambda: _drained(redis, queue.keys), 300)
        result.process_per_s = jobs / (time.perf_counter() - started)
        result.cpu_process_us = await cpu_per_job_us(redis, cpu, jobs + 1)
        ids: list[str] = []

        async def send() -> None:
            sent = stamp_task.kiq(data={"sent": time.time()})
            ids.append((await timed(result.kiq_ms, sent)).task_id)

        await paced(rate, seconds, send)
        await wait_for(lambda: _drained(redis, queue.keys), 60)
        for job in await queue.get_many(ids):
            assert isinstance(job.result, dict), f"stamp job {job.id} ended {job.state}"
            result.latency_ms.append(float(job.result["start_latency_ms"]))
    finally:
        stop(worker)
    if name == next(iter(OURS_WORKERS)):
        await _bulk_and_listpack(result, queue, jobs, configurable)
    await _delete(redis, f"jqbench:{{{queue_name}}}:*")
    await broker.shutdown()
    return result


async def _reported_latency_s(queue: Any, job_id: str, timeout: float = 60) -> float:
    """The start latency a `bench-stamp` job reports once it has run, in seconds."""
    reported: list[float] = []

    async def done() -> bool:
        found = await queue.get_many([job_id])
        if found and isinstance(found[0].result, dict):
            reported.append(float(found[0].result["start_latency_ms"]) / 1000)
        return bool(reported)

    await wait_for(done, timeout)
    return reported[0]


async def _bulk_and_listpack(result: Result, queue: Any, jobs: int, configurable: bool) -> None:
    """Bulk enqueue rate (each spec built and validated, as the HTTP API does), its Redis CPU,
    and memory per job with listpack-encoded job hashes."""
    from service.jobs.registry import REGISTRY

    noop = REGISTRY.get("noop")
    took = 0.0
    cpu = await used_cpu(queue.redis)
    for _ in range(jobs // 1000):
        t0 = time.perf_counter()
        await queue.enqueue_many([noop.build_spec({}, queue.config) for _ in range(1000)])
        took += time.perf_counter() - t0
    result.cpu_bulk_us = await cpu_per_job_us(queue.redis, cpu, jobs // 1000 * 1000)
    result.bulk_enqueue_per_s = (jobs // 1000 * 1000) / took
    await _delete(queue.redis, f"jqbench:{{{queue.keys.queue}}}:*")
    if configurable:
        specs = [noop.build_spec({}, queue.config)] * 1000
        result.bytes_per_job_listpack = await _memory_with_listpack(queue.redis, queue, specs, jobs)


async def _memory_with_listpack(redis: Redis, queue: Any, specs: list[Any], jobs: int) -> float:
    """Bytes per queued job when job hashes may stay listpack-encoded: a job's message is
    longer than Redis's default 64-byte listpack value limit, which turns every job hash into
    a (much larger) hashtable. Restores the server's setting afterwards."""
    old = (await redis.config_get("hash-max-listpack-value"))["hash-max-listpack-value"]
    await redis.config_set("hash-max-listpack-value", 1024)
    try:
        before = await used_memory(redis)
        for _ in range(jobs // 1000):
            await queue.enqueue_many(specs)
        return (await used_memory(redis) - before) / (jobs // 1000 * 1000)
    finally:
        await redis.config_set("hash-max-listpack-value", old)


async def _zcard_at_least(redis: Redis, key: str, n: int) -> bool:
    return int(await redis.zcard(key)) >= n


async def _drained(redis: Redis, keys: Any) -> bool:
    # Completed jobs are trimmed by retention, so "done" is: nothing left to run or running.
    pipe = redis.pipeline(transaction=False)
    for key in (keys.pending, keys.delayed, keys.active):
        pipe.zcard(key)
    return sum(await pipe.execute()) == 0


async def _delete(redis: Redis, pattern: str) -> None:
    async for key in redis.scan_iter(match=pattern, count=5000):
        await redis.delete(key)


# --- taskiq-redis RedisStreamBroker -------------------------------------------------------------


async def bench_stream(url: str, jobs: int, rate: int, seconds: float, logs: Path) -> Result:
    stream = "bench-stream-" + uuid.uuid4().hex[:8]
    env = {**os.environ, "BENCH_REDIS_URL": url, "BENCH_STREAM": stream}
    os.environ.update({"BENCH_REDIS_URL": url, "BENCH_STREAM": stream})
    from bench import stream_app

    broker = stream_app.broker
    await broker.startup()
    redis = Redis.from_url(url, decode_responses=True)
    result = Result("taskiq-redis RedisStreamBroker")
    before, cpu = await used_memory(redis), await used_cpu(redis)
    took = await run_in_flight(jobs, stream_app.noop.kiq)
    result.enqueue_per_s = jobs / took
    result.cpu_enqueue_us = await cpu_per_job_us(redis, cpu, jobs)
    result.bytes_per_job = (await used_memory(redis) - before) / jobs

    command = [sys.executable, "-m", "taskiq", "worker", "bench.stream_app:broker", "--workers",
               "1", "--max-async-tasks", str(CONCURRENCY), "--log-level", "WARNING"]  # fmt: skip
    cpu = await used_cpu(redis)
    worker = start_worker(command, env, logs / "stream.log")
    try:
        started = time.perf_counter()
        await wait_for(lambda: _stream_drained(redis, stream, jobs), 300)
        result.process_per_s = jobs / (time.perf_counter() - started)
        result.cpu_process_us = await cpu_per_job_us(redis, cpu, jobs)
        sent = 0

        async def send() -> None:
            nonlocal sent
            await timed(result.kiq_ms, stream_app.stamp.kiq(time.time()))
            sent += 1

        await paced(rate, seconds, send)
        await wait_for(lambda: _llen_at_least(redis, stream + ":lat", sent), 60)
        result.latency_ms = [float(v) * 1000 for v in await redis.lrange(stream + ":lat", 0, -1)]
    finally:
        stop(worker)
    await redis.delete(stream, stream + ":lat")
    await redis.aclose()
    await broker.shutdown()
    return result


async def _stream_drained(redis: Redis, stream: str, total: int) -> bool:
    groups = await redis.xinfo_groups(stream)
    if not groups:
        return False
    group = groups[0]
    return int(group.get("entries-read") or 0) >= total and int(group["pending"]) == 0


async def _llen_at_least(redis: Redis, key: str, n: int) -> bool:
    return int(await redis.llen(key)) >= n


# --- report -------------------------------------------------------------------------------------


def report(results: list[Result], jobs: int, rate: int) -> str:
    """Markdown tables of the run."""
    lines = [
        f"| broker | enqueue/s (kiq, 100 in flight) | bulk enqueue/s | processed/s ({jobs} noop, "
        f"1 process) | start p50 ms @{rate}/s | start p99 ms | producer kiq() p50 / p99 ms | "
        "bytes per queued job (listpack 1024) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        bulk = f"{r.bulk_enqueue_per_s:,.0f}" if r.bulk_enqueue_per_s else "n/a"
        lines.append(
            f"| {r.name} | {r.enqueue_per_s:,.0f} | {bulk} | {r.process_per_s:,.0f} | "
            f"{r.pct(0.5):.2f} | {r.pct(0.99):.2f} | "
            f"{percentile(r.kiq_ms, 0.5):.2f} / {percentile(r.kiq_ms, 0.99):.2f} | "
            f"{r.bytes_per_job:,.0f}"
            + (f" ({r.bytes_per_job_listpack:,.0f})" if r.bytes_per_job_listpack else "")
            + " |"
        )
    lines += [
        "",
        "| broker | worker start-up s (spawn to first job) | Redis CPU µs/job: kiq enqueue | "
        "bulk enqueue | processing | per job (cheaper enqueue + processing) | "
        "ceiling jobs/s per primary |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        startup = f"{r.startup_s:.2f}" if r.startup_s is not None else "n/a"
        bulk_cpu = f"{r.cpu_bulk_us:.1f}" if r.cpu_bulk_us is not None else "n/a"
        lines.append(
            f"| {r.name} | {startup} | {r.cpu_enqueue_us:.1f} | {bulk_cpu} | "
            f"{r.cpu_process_us:.1f} | {r.cpu_per_job_us:.1f} | {r.ceiling_per_s:,.0f} |"
        )
    theirs = results[-1]
    lines.append("")
    for ours in results[:-1]:
        lines.append(
            f"- {ours.name} / stream: processing "
            f"{ours.process_per_s / theirs.process_per_s:.2f}x, "
            f"enqueue {ours.enqueue_per_s / theirs.enqueue_per_s:.2f}x, "
            f"p99 start latency {ours.pct(0.99) / theirs.pct(0.99):.2f}x, "
            f"memory per job {ours.bytes_per_job / theirs.bytes_per_job:.2f}x, "
            f"Redis CPU per job {ours.cpu_per_job_us / theirs.cpu_per_job_us:.2f}x."
        )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=500, help="arrivals per second (latency)")
    parser.add_argument("--seconds", type=float, default=10.0, help="latency run length")
    parser.add_argument(
        "--redis-url", help="an existing server instead of a private one (CPU figures then "
        "include its other clients; no CONFIG SET, so no listpack figure)",
    )  # fmt: skip
    args = parser.parse_args()
    logs = REPO / ".jobqueue" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        url = args.redis_url or stack.enter_context(private_redis())
        ours = [
            await bench_ours(
                name, command, url, args.jobs, args.rate, args.seconds, logs,
                configurable=not args.redis_url,
            )
            for name, command in OURS_WORKERS.items()
        ]  # fmt: skip
        theirs = await bench_stream(url, args.jobs, args.rate, args.seconds, logs)
    print(report([*ours, theirs], args.jobs, args.rate))
    samples = ", ".join(str(len(r.latency_ms)) for r in [*ours, theirs])
    print(f"\nlatency samples per row: {samples}; load average {os.getloadavg()}")


if __name__ == "__main__":
    asyncio.run(main())
