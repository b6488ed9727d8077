"""WORKER_CONCURRENCY sweep: jobs/s of one `jobqueue worker` process per job kind and setting.

    uv run python -m bench.worker_concurrency --redis-url redis://127.0.0.1:6411/0

For each job kind and each WORKER_CONCURRENCY, N jobs are enqueued with no worker running,
then `jobqueue worker` (WORKER_COUNT=1, everything else default) starts and drains them; the
rate is (N - 1) / (last job's start - first job's start), read from the job records, as the
peer harness measures it. Kinds:

- `noop`: the built-in no-op, nothing to do (the queue's own overhead);
- `noop-io`: the no-op sleeping 20 ms (a job that waits on a network call);
- `data-processing`: the built-in type on 500 inline records, a filter, a group-by with
  three aggregates and a JSON artifact written to a temporary folder (CPU and a file write).

Use a Redis of its own (it deletes the queue's keys after each run, not the whole database).
Print a markdown table; the figures belong in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from service.jobs import load_job_types
from service.queue.connection import connect, make_queue
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
WORKER = [str(ROOT / ".venv" / "bin" / "jobqueue"), "worker"]
DRAIN_TIMEOUT_SECONDS = 600


def _records(n: int) -> list[dict[str, Any]]:
    return [{"region": f"r{i % 7}", "amount": i % 97, "units": i % 13} for i in range(n)]


KINDS: dict[str, tuple[str, dict[str, Any]]] = {
    "noop": ("noop", {}),
    "noop-io": ("noop", {"sleep_seconds": 0.02}),
    "data-processing": (
        "data-processing",
        {
            "dataset": {"records": _records(500)},
            "filters": [{"field": "units", "op": "gt", "value": 1}],
            "group_by": ["region"],
            "aggregates": [
                {"op": "count", "as": "n"},
                {"op": "sum", "field": "amount"},
                {"op": "mean", "field": "units"},
            ],
        },
    ),
}


async def one_run(redis_url: str, kind: str, concurrency: int, n: int) -> float:
    """Jobs/s of one worker draining `n` jobs of `kind` at `concurrency`."""
    queue_name = f"bench-conc-{uuid.uuid4().hex[:8]}"
    artifacts = tempfile.mkdtemp(prefix="bench-conc-")
    settings = Settings(redis_url=redis_url, queue_name=queue_name)
    redis = connect(settings)
    queue = make_queue(settings, redis)
    type_name, data = KINDS[kind]
    job_type = load_job_types().get(type_name)
    ids: list[str] = []
    for start in range(0, n, 1000):
        specs = [job_type.build_spec(data, queue.config) for _ in range(min(1000, n - start))]
        ids += [r.job.id for r in await queue.enqueue_many(specs)]
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "QUEUE_NAME": queue_name,
        "WORKER_COUNT": "1",
        "WORKER_CONCURRENCY": str(concurrency),
        "ARTIFACT_DIR": artifacts,
    }
    # Started from the event loop on purpose: nothing else runs meanwhile.
    worker = subprocess.Popen(  # noqa: ASYNC220
        WORKER,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        # Completed jobs are kept (the default retention): their records say when each started.
        while (await queue.throughput(minutes=30))["completed"] < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{kind} at {concurrency}: not drained in time")
            await asyncio.sleep(0.05)
        starts = []
        for i in range(0, n, 500):
            starts += [job.started_at.timestamp() for job in await queue.get_many(ids[i : i + 500])]
        first_start, last_start = min(starts), max(starts)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
        keys = [key async for key in redis.scan_iter(match=f"*{queue_name}*", count=1000)]
        for i in range(0, len(keys), 500):
            await redis.delete(*keys[i : i + 500])
        await redis.aclose()
        shutil.rmtree(artifacts, ignore_errors=True)
    return (n - 1) / max(last_start - first_start, 1e-6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", default="10,50,100,200")
    parser.add_argument("--kinds", default="noop,noop-io,data-processing")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    kinds = args.kinds.split(",")
    rows: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):  # interleaved, so a noisy neighbour hits every setting alike
        for kind in kinds:
            for level in levels:
                rate = asyncio.run(one_run(args.redis_url, kind, level, args.n))
                rows.setdefault((kind, level), []).append(rate)
                print(f"{kind} c={level}: {rate:,.0f}/s", file=sys.stderr, flush=True)
    print("| job kind | " + " | ".join(f"c={level}" for level in levels) + " |")
    print("|---|" + "---:|" * len(levels))
    for kind in kinds:
        cells = [f"{statistics.median(rows[(kind, level)]):,.0f}" for level in levels]
        print(f"| {kind} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
