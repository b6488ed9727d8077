"""Monitoring through the HTTP API: stats, health, workers, the per-state lists (order and
pagination), the by-type list, /metrics, and fixed paths winning over `{id}`/`{type}`."""

from __future__ import annotations

import time

import httpx
import pytest

from service.queue.consumer import Consumer, Outcome
from service.queue.queue import JobQueue


async def enqueue(client: httpx.AsyncClient, **body: object) -> str:
    response = await client.post("/jobs/enqueue", json={"type": "noop", **body})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def walk(client: httpx.AsyncClient, path: str, limit: int, **params: str) -> list[str]:
    """Every id of a paginated list, following next_cursor."""
    ids: list[str] = []
    cursor = None
    for _ in range(100):
        query = {"limit": str(limit), **params, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(path, params=query)).json()
        assert len(page["items"]) <= limit
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids
    raise AssertionError("pagination did not end")


async def test_stats_counts_per_status_priority_and_type(client: httpx.AsyncClient) -> None:
    await enqueue(client, priority="high")
    await enqueue(client, priority="high")
    await enqueue(client, priority="low", delay_seconds=30)
    stats = (await client.get("/jobs/stats")).json()
    assert stats["counts"]["pending"] == 2
    assert stats["counts"]["delayed"] == 1
    assert stats["pending_by_priority"] == {"low": 0, "normal": 0, "high": 2, "critical": 0}
    assert stats["by_type"]["noop"]["pending"] == 2
    assert set(stats["throughput_last_minute"]) == {"completed", "failed", "retried"}


async def test_pending_lists_in_run_order_across_pages(client: httpx.AsyncClient) -> None:
    low = [await enqueue(client, priority="low") for _ in range(3)]
    critical = [await enqueue(client, priority="critical") for _ in range(3)]
    normal = [await enqueue(client) for _ in range(3)]
    assert await walk(client, "/jobs/pending", limit=2) == critical + normal + low


async def test_cancelled_lists_newest_first_across_pages(client: httpx.AsyncClient) -> None:
    ids = [await enqueue(client) for _ in range(5)]
    for job_id in ids:
        assert (await client.delete(f"/jobs/{job_id}")).status_code == 200
    assert await walk(client, "/jobs/cancelled", limit=2) == list(reversed(ids))


async def test_delayed_lists_by_due_time(client: httpx.AsyncClient) -> None:
    later = await enqueue(client, delay_seconds=90)
    sooner = await enqueue(client, delay_seconds=30)
    assert await walk(client, "/jobs/delayed", limit=10) == [sooner, later]


async def test_active_lists_by_start_time_not_by_lease_across_pages(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    # The active set is scored by lease deadline; give the earliest starter the longest lease
    # so that order and start order disagree, and the list must follow start time.
    ids = [await enqueue(client) for _ in range(3)]
    now = [time.time()]
    clocked = JobQueue(queue.redis, queue.keys, queue.config, clock=lambda: now[0])
    for worker_id, lease in (("w-long", 300), ("w-short", 30), ("w-mid", 100)):
        taken, _ = await Consumer(clocked, worker_id, lease).dequeue(1)
        assert len(taken) == 1
        now[0] += 1
    assert await walk(client, "/jobs/active", limit=1) == ids


async def test_completed_and_failed_list_newest_first(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    ids = [await enqueue(client, attempts=1) for _ in range(4)]
    now = [time.time()]
    clocked = JobQueue(queue.redis, queue.keys, queue.config, clock=lambda: now[0])
    consumer = Consumer(clocked, "w-1", 30)
    taken, _ = await consumer.dequeue(4)
    assert [d.job_id for d in taken] == ids
    for index, delivery in enumerate(taken):
        now[0] += 1
        ok = index % 2 == 0
        outcome = Outcome(delivery.job_id, completed=ok, payload="null" if ok else "boom")
        await consumer.finish_many([outcome])
    assert await walk(client, "/jobs/completed", limit=1) == [ids[2], ids[0]]
    assert await walk(client, "/jobs/failed", limit=1) == [ids[3], ids[1]]


@pytest.mark.parametrize("word", ["failed", "active", "completed", "pending"])
async def test_empty_lists_are_an_empty_page(client: httpx.AsyncClient, word: str) -> None:
    response = await client.get(f"/jobs/{word}")
    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


async def test_by_type_list_filters_by_status(client: httpx.AsyncClient) -> None:
    kept = [await enqueue(client) for _ in range(3)]
    gone = await enqueue(client)
    await client.delete(f"/jobs/{gone}")
    assert await walk(client, "/jobs/noop/jobs", limit=2) == [gone, *reversed(kept)]
    assert await walk(client, "/jobs/noop/jobs", limit=2, status="cancelled") == [gone]
    assert await walk(client, "/jobs/noop/jobs", limit=2, status="pending") == kept[::-1]


async def test_by_type_list_of_unknown_type_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/jobs/unknown-type/jobs")
    assert response.status_code == 404
    assert "noop" in response.json()["error"]["details"]["known_types"]


@pytest.mark.parametrize(
    ("params", "field"), [({"limit": "0"}, "limit"), ({"limit": "501"}, "limit")]
)
async def test_bad_pagination_is_422(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    response = await client.get("/jobs/pending", params=params)
    assert response.status_code == 422
    assert response.json()["error"]["details"]["errors"][0]["field"] == field


async def test_a_cursor_the_api_never_returned_is_422(client: httpx.AsyncClient) -> None:
    for path in ("/jobs/pending", "/jobs/active", "/jobs/noop/jobs"):
        response = await client.get(path, params={"cursor": "garbage"})
        assert response.status_code == 422, path
        assert response.json()["error"]["details"]["errors"][0]["field"] == "cursor"


async def test_fixed_paths_win_over_id_and_type(client: httpx.AsyncClient) -> None:
    for word in ("stats", "health", "workers", "types", "failed", "pending", "active"):
        response = await client.get(f"/jobs/{word}")
        assert response.status_code in (200, 503), word
        assert "error" not in response.json(), word


async def test_workers_lists_live_heartbeats(client: httpx.AsyncClient, queue: JobQueue) -> None:
    # A heartbeat as the worker runtime writes it, so this test needs no worker process.
    await queue.redis.zadd(queue.keys.workers, {"w-1": 1})
    await queue.redis.hset(
        queue.keys.worker("w-1"),
        mapping={
            "id": "w-1", "host": "box", "pid": "42", "started": "1700000000000",
            "heartbeat": "1700000005000", "processed": "7", "failed": "1", "concurrency": "10",
            "jobs": '["abc"]', "stalled": "1", "stalls": "2",
        },
    )  # fmt: skip
    items = (await client.get("/jobs/workers")).json()["items"]
    assert items == [
        {
            "id": "w-1", "host": "box", "pid": 42, "started_at": "2023-11-14T22:13:20Z",
            "last_heartbeat": "2023-11-14T22:13:25Z", "processed": 7, "failed": 1,
            "concurrency": 10, "current_jobs": ["abc"],
            # A heartbeat without running/reserved (an older worker): its running ids count.
            "running": 1, "reserved": 0, "stalled": True, "stalls": 2,
        }
    ]  # fmt: skip


async def test_health_reports_each_check(client: httpx.AsyncClient) -> None:
    await enqueue(client)  # pending work and no workers: at least degraded
    response = await client.get("/jobs/health")
    body = response.json()
    assert body["status"] in ("degraded", "unhealthy")
    assert response.status_code == (503 if body["status"] == "unhealthy" else 200)
    names = {check["name"] for check in body["checks"]}
    assert "redis" in " ".join(names)
    assert all(c["status"] in ("healthy", "degraded", "unhealthy") for c in body["checks"])


async def test_metrics_is_prometheus_text(client: httpx.AsyncClient) -> None:
    await enqueue(client)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE" in response.text


async def test_health_names_a_worker_whose_heartbeat_says_it_stalled(
    client: httpx.AsyncClient, queue: JobQueue
) -> None:
    # The registry entry as the worker's heartbeat writes it (consumer.py), with the stall
    # detector's verdict in `stalled` / `stalls`.
    now = int(time.time() * 1000)
    info: dict[str, str | int] = {
        "id": "w-stuck", "host": "box", "pid": 42, "started": now - 60_000, "concurrency": 10,
        "processed": 3, "failed": 0, "stalled": "1", "stalls": 2,
    }  # fmt: skip
    await Consumer(queue, "w-stuck", lease_seconds=30).heartbeat(info, [], ttl_ms=60_000)

    response = await client.get("/jobs/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    check = next(c for c in body["checks"] if c["name"] == "stalled_workers")
    assert (check["status"], check["value"]) == ("degraded", 1)
    assert "w-stuck" in check["detail"]


async def test_health_and_metrics_report_redis_memory(client: httpx.AsyncClient) -> None:
    health = (await client.get("/jobs/health")).json()
    metrics = (await client.get("/metrics")).text

    memory = next(c for c in health["checks"] if c["name"] == "memory")
    assert memory["status"] in ("healthy", "degraded", "unhealthy")
    assert memory["value"] > 0
    for name in ("redis_memory_used_bytes", "redis_memory_max_bytes", "enqueues_refused"):
        assert f"# TYPE jobqueue_{name} gauge" in metrics
