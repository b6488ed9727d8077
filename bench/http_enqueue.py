"""HTTP enqueue benchmark: one API process (`jobqueue api`: uvicorn with the service's default
settings) under load, beside the limit of this machine, in one run against the same Redis.

The limit: one uvicorn process serving a minimal FastAPI endpoint that does one Redis LPUSH
(bench/lpush_app.py), under the same load. Scenarios, each with throughput and p50/p99:
- the limit, `POST /enqueue`, 1 connection and N connections;
- HTTP `POST /jobs/enqueue`, one job per request, 1 connection and N connections;
- HTTP `POST /jobs/enqueue/bulk` with 100 jobs per request (jobs/s);
- direct `JobQueue.enqueue` from one asyncio process: sequential (latency) and with N calls in
  flight (throughput).
Load from wrk (a Lua script for the POST) or, when wrk is missing, a Python httpx async load
generator (much slower than wrk: it then measures itself as much as the server).

Run: `uv run python -m bench.http_enqueue [--seconds 10] [--connections 32] [--write]`.
Bounded in time; talks only to 127.0.0.1: the servers it starts, and a Redis server of its own
(bench/private_redis.py) or `--redis-url` (loopback only). Its keys are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
from redis.asyncio import Redis

from bench.private_redis import free_port, private_redis
from service.queue.keys import QueueKeys
from service.queue.models import JobSpec
from service.queue.queue import JobQueue

REPO = Path(__file__).resolve().parents[1]
API_KEY = "bench-key-0123456789abcdef"
PREFIX = "jqbench"
MAX_SECONDS = 60
JOB = {"type": "noop", "data": {"sleep_seconds": 0}}


@dataclass
class Figures:
    """One scenario's result."""

    name: str
    per_second: float
    p50_ms: float | None
    p99_ms: float | None
    requests: int
    errors: int
    tool: str


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered)) - 1))]


# --- servers ---------------------------------------------------------------------------------


@contextmanager
def redis_server(url: str | None) -> Iterator[str]:
    """`url` if it is loopback, else a private server."""
    if url:
        if urlparse(url).hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("bench: --redis-url must point at 127.0.0.1; refusing to load it")
        yield url
        return
    with private_redis() as own:
        yield own


@contextmanager
def api_process(redis_url: str, queue: str) -> Iterator[str]:
    """One `jobqueue api` process on loopback, as production starts it (uvicorn with the
    service's settings: no access log by default); yields its URL."""
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "QUEUE_NAME": queue,
        "KEY_PREFIX": PREFIX,
        "API_KEYS": API_KEY,
        "ENVIRONMENT": "test",
    }
    command = [sys.executable, "-c", "import sys; from service.cli import main; sys.exit(main())",
               "api", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with served(command, env, f"http://127.0.0.1:{port}", "/readyz") as base:
        yield base


@contextmanager
def limit_process(redis_url: str, list_key: str) -> Iterator[str]:
    """One uvicorn process serving bench/lpush_app.py with uvicorn's defaults, but for the
    access log, off as in ours (each log line costs the limit about a tenth of its rate)."""
    port = free_port()
    env = {**os.environ, "BENCH_REDIS_URL": redis_url, "BENCH_LIST": list_key}
    command = [sys.executable, "-m", "uvicorn", "bench.lpush_app:app", "--host", "127.0.0.1",
               "--port", str(port), "--no-access-log", "--log-level", "warning"]  # fmt: skip
    with served(command, env, f"http://127.0.0.1:{port}", "/docs") as base:
        yield base


@contextmanager
def served(command: list[str], env: dict[str, str], base: str, ready: str) -> Iterator[str]:
    """Run a server process until the block ends, once `base + ready` answers 200."""
    process = subprocess.Popen(command, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}{ready}", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise SystemExit(f"bench: {command[-1]} did not become ready")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


# --- HTTP load -------------------------------------------------------------------------------

LUA = """
wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "%s"
"""


def wrk_run(
    url: str, body: str, seconds: int, connections: int
) -> tuple[float, float, float, int, int]:
    """(requests/s, p50 ms, p99 ms, requests, non-2xx) from wrk with a POST Lua script."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA % (body, API_KEY))
    try:
        output = subprocess.run(
            [
                "wrk",
                f"-t{min(2, connections)}",
                f"-c{connections}",
                f"-d{seconds}s",
                "--latency",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 30,
        ).stdout
    finally:
        Path(script.name).unlink()
    return _parse_wrk(output)


def _parse_wrk(output: str) -> tuple[float, float, float, int, int]:
    def latency(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", output).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = int(bad.group(1)) if bad else 0
    return rps, latency("50%"), latency("99%"), total, errors


async def httpx_run(
    url: str, body: str, seconds: int, connections: int
) -> tuple[float, float, float, int, int]:
    """The same measurement with an httpx async load generator (when wrk is missing)."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=connections)
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
    async with httpx.AsyncClient(limits=limits, headers=headers) as client:

        async def user() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await client.post(url, content=body)
                latencies.append((time.perf_counter() - started) * 1000)
                errors += response.status_code >= 300

        started = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return (
        len(latencies) / elapsed,
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        len(latencies),
        errors,
    )


def http_scenario(
    name: str,
    url: str,
    body: str,
    args: argparse.Namespace,
    jobs_per_request: int,
    connections: int | None = None,
) -> Figures:
    """Run one HTTP scenario with wrk, or httpx if wrk is not installed."""
    conns = connections or args.connections
    if shutil.which("wrk"):
        rps, p50, p99, total, errors = wrk_run(url, body, args.seconds, conns)
        tool = f"wrk -t{min(2, conns)} -c{conns} -d{args.seconds}s"
    else:
        rps, p50, p99, total, errors = asyncio.run(httpx_run(url, body, args.seconds, conns))
        tool = f"httpx async, {conns} connections, {args.seconds}s"
    return Figures(name, rps * jobs_per_request, p50, p99, total, errors, tool)


# --- direct queue layer ----------------------------------------------------------------------


async def direct_scenarios(
    redis_url: str, queue_name: str, seconds: int, in_flight: int
) -> list[Figures]:
    """`JobQueue.enqueue` sequentially (latency) and with `in_flight` concurrent calls."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    queue = JobQueue(redis, QueueKeys(PREFIX, queue_name))
    spec = JobSpec(
        type="noop", data={"sleep_seconds": 0, "fail_first_attempts": 0, "progress_steps": 0}
    )
    try:
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds / 2
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await queue.enqueue(spec)
            latencies.append((time.perf_counter() - started) * 1000)
        sequential = Figures(
            "JobQueue.enqueue, sequential",
            len(latencies) / (seconds / 2),
            percentile(latencies, 0.5),
            percentile(latencies, 0.99),
            len(latencies),
            0,
            "1 asyncio task",
        )
        count = 0
        end = time.perf_counter() + seconds / 2

        async def caller() -> None:
            nonlocal count
            while time.perf_counter() < end:
                await queue.enqueue(spec)
                count += 1

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(in_flight)))
        concurrent = Figures(
            f"JobQueue.enqueue, {in_flight} in flight",
            count / (time.perf_counter() - started),
            None,
            None,
            count,
            0,
            f"{in_flight} asyncio tasks",
        )
        return [sequential, concurrent]
    finally:
        async for key in redis.scan_iter(match=f"{PREFIX}:{{{queue_name}}}:*", count=1000):
            await redis.delete(key)
        await redis.aclose()


# --- report ----------------------------------------------------------------------------------


def machine() -> str:
    """CPU, cores, OS and Python of this run."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} vCPU, {system}, Python {platform.python_version()}"


def table(figures: list[Figures]) -> str:
    """The results as a Markdown table."""

    def ms(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}"

    rows = [
        "| scenario | jobs/s | p50 ms | p99 ms | requests | errors | load |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    rows += [
        f"| {f.name} | {f.per_second:,.0f} | {ms(f.p50_ms)} | {ms(f.p99_ms)} | {f.requests:,} "
        f"| {f.errors} | {f.tool} |"
        for f in figures
    ]
    return "\n".join(rows)


def main() -> None:
    """Run the scenarios and print (or write) the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help=f"per scenario (max {MAX_SECONDS})")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--redis-url", help="a loopback server instead of a private one")
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks-http.md")
    args = parser.parse_args()
    args.seconds = max(1, min(args.seconds, MAX_SECONDS))
    queue_name = "bench-" + uuid.uuid4().hex[:8]
    list_key = f"{PREFIX}:lpush-{queue_name}"
    single, bulk = json.dumps(JOB), json.dumps({"jobs": [JOB] * 100})
    with redis_server(args.redis_url) as redis_url:
        with limit_process(redis_url, list_key) as base:
            figures = [
                http_scenario(LIMIT_ONE, f"{base}/enqueue", single, args, 1, connections=1),
                http_scenario(LIMIT, f"{base}/enqueue", single, args, 1),
            ]
        with api_process(redis_url, queue_name) as base:
            url = f"{base}/jobs/enqueue"
            figures += [
                http_scenario(OURS_ONE, url, single, args, 1, connections=1),
                http_scenario(OURS, url, single, args, 1),
                http_scenario(
                    "HTTP POST /jobs/enqueue/bulk (100 jobs/request)", f"{url}/bulk", bulk,
                    args, 100,
                ),
            ]  # fmt: skip
        figures += asyncio.run(
            direct_scenarios(redis_url, queue_name, args.seconds, args.connections)
        )
        redis_version = asyncio.run(_redis_version(redis_url, list_key))
    report = render(figures, args, redis_version)
    print(report)
    if args.write:
        (REPO / "docs" / "benchmarks-http.md").write_text(report)


LIMIT_ONE = "limit: FastAPI + one LPUSH, 1 connection"
LIMIT = "limit: FastAPI + one LPUSH"
OURS_ONE = "HTTP POST /jobs/enqueue, 1 connection"
OURS = "HTTP POST /jobs/enqueue"


async def _redis_version(url: str, list_key: str) -> str:
    redis = Redis.from_url(url, decode_responses=True)
    try:
        await redis.delete(list_key)
        info = await redis.info("server")
        if "valkey_version" in info:
            return f"Valkey {info['valkey_version']}"
        return f"Redis {info['redis_version']}"
    finally:
        await redis.aclose()


def render(figures: list[Figures], args: argparse.Namespace, redis_version: str) -> str:
    """The Markdown report."""
    by_name = {f.name: f for f in figures}
    limit, ours = by_name[LIMIT], by_name[OURS]
    one, direct = by_name[OURS_ONE], figures[-2]
    overhead = (one.p50_ms or 0) - (direct.p50_ms or 0)
    return f"""# HTTP enqueue benchmark

Command: `uv run python -m bench.http_enqueue --seconds {args.seconds} \
--connections {args.connections} --write`
Machine: {machine()}; {redis_version} on 127.0.0.1; load generator on the same machine.
Ours: one `jobqueue api` process (uvicorn with the service's default settings). The limit: one
uvicorn process (its defaults, access log off as in ours) serving a FastAPI endpoint that reads
the same JSON body into a pydantic model and does one Redis `LPUSH` (bench/lpush_app.py).

{table(figures)}

- **Ours against the limit, {args.connections} connections: \
{ours.per_second / limit.per_second:.2f}x the requests/s** ({ours.per_second:,.0f} against \
{limit.per_second:,.0f}), p99 {ours.p99_ms or 0:.2f} ms against {limit.p99_ms or 0:.2f} ms.
- HTTP rows: one server process; p50/p99 are per request as the load generator saw them, with
  {args.connections} connections kept busy, so they include queueing inside the server.
- Direct rows: `JobQueue.enqueue` from one asyncio process on the same Redis; sequential gives the
  floor of one enqueue (one Lua script call; the job is described from what was sent).
  Concurrent `enqueue` calls in one process share script calls (service/queue/enqueue_batch.py),
  in the API as here.
- With one connection (no queueing), HTTP adds about {overhead:.2f} ms at p50 over a direct
  enqueue: the request's cost in the API process (JSON, pydantic validation of the options and
  the payload model, auth). For more, run more API processes (ECS tasks behind the ALB) or use
  the bulk endpoint, which spends one request and one Redis round trip on up to 1,000 jobs.
- Load generator and servers share {os.cpu_count()} vCPU, so absolute numbers are a lower bound.
  Load average when the run ended: {" / ".join(f"{x:.1f}" for x in os.getloadavg())} (1/5/15 min);
  above the vCPU count, other processes were competing and the figures are pessimistic.
"""


if __name__ == "__main__":
    main()
