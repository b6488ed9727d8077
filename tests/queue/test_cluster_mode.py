"""REDIS_CLUSTER: the queue on a real three-primary Valkey cluster, reached through a node that
does not own the queue's slot, and following that slot when it is migrated under load."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, MovedError

from service.queue.cluster import QueueSlotSSLConnection, owner_of
from service.queue.connection import connect, make_queue, queue_keys
from service.queue.models import JobSpec
from service.queue.queue import JobQueue
from service.queue.states import JobState
from service.settings import Settings
from tests.support.cluster import ClusterNode, ValkeyCluster, tls_cluster_node, valkey_cluster
from tests.support.state import assert_consistent, assert_no_leaked_keys
from tests.support.workers import all_done, running_worker, wait_until, worker_env

pytestmark = pytest.mark.slow

PROBE = {"JOB_MODULES": "tests.support.probe_jobs", "REDIS_CLUSTER": "true"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[ValkeyCluster]:
    with valkey_cluster() as started:
        yield started


def cluster_settings(entry: ClusterNode, queue_name: str) -> Settings:
    return Settings(
        redis_url=entry.url, redis_cluster=True, queue_name=queue_name, key_prefix="jqtest"
    )


@pytest.fixture
async def cluster_queue(cluster: ValkeyCluster, queue_name: str) -> AsyncIterator[JobQueue]:
    """The test queue, through a node that does not serve its slot."""
    settings = cluster_settings(cluster.nodes[0], queue_name)
    slot = queue_keys(settings).cluster_slot
    if cluster.owner(slot) is cluster.nodes[0]:
        cluster.move_slot(slot, cluster.nodes[1])
    client = connect(settings)
    try:
        yield make_queue(settings, client)
    finally:
        await client.aclose()


def probe(seconds: float = 0) -> JobSpec:
    return JobSpec(type="probe", data={"seconds": seconds})


def owner_client(cluster: ValkeyCluster, queue: JobQueue) -> Redis:
    return Redis(port=cluster.owner(queue.keys.cluster_slot).port, decode_responses=True)


async def test_queue_and_worker_reach_the_slot_owner_through_any_node(
    cluster: ValkeyCluster, cluster_queue: JobQueue, tmp_path: Path
) -> None:
    entry = cluster.nodes[0]
    plain = Redis(port=entry.port, decode_responses=True)
    try:
        with pytest.raises(MovedError):  # what a client without REDIS_CLUSTER gets
            await plain.zcard(cluster_queue.keys.pending)
    finally:
        await plain.aclose()

    bulk = [r.job.id for r in await cluster_queue.enqueue_many([probe()] * 50)]  # MULTI/EXEC
    single = (await cluster_queue.enqueue(probe())).job.id
    delayed = (await cluster_queue.enqueue(JobSpec(type="probe", delay_seconds=0.5))).job.id
    env = worker_env(entry.url, cluster_queue.keys.queue, **PROBE)
    with running_worker(env, tmp_path / "worker.log"):
        await wait_until(lambda: all_done(cluster_queue, [*bulk, single, delayed]), timeout=30)
    jobs = await cluster_queue.get_many([*bulk, single, delayed])
    assert {job.state for job in jobs} == {JobState.COMPLETED}
    assert all(job.attempts_made == 1 and job.stalls == 0 for job in jobs)
    owner = owner_client(cluster, cluster_queue)
    await assert_consistent(owner, cluster_queue.keys)
    await assert_no_leaked_keys(owner, cluster_queue.keys)
    await owner.aclose()


async def test_a_migrated_slot_is_followed_and_no_job_is_lost_or_run_twice(
    cluster: ValkeyCluster, cluster_queue: JobQueue, tmp_path: Path
) -> None:
    slot = cluster_queue.keys.cluster_slot
    before = [r.job.id for r in await cluster_queue.enqueue_many([probe(0.02)] * 200)]
    env = worker_env(cluster.nodes[0].url, cluster_queue.keys.queue, worker_concurrency=4, **PROBE)
    with running_worker(env, tmp_path / "worker.log"):
        await wait_until(lambda: _count(cluster_queue, JobState.COMPLETED, 20), timeout=20)
        source = cluster.owner(slot)
        target = next(n for n in cluster.nodes if n is not source and n is not cluster.nodes[0])
        moved = await asyncio.to_thread(cluster.move_slot, slot, target)
        # The same client, pointed at its old owner, enqueues on without an error.
        after = [r.job.id for r in await cluster_queue.enqueue_many([probe()] * 20)]
        await wait_until(lambda: all_done(cluster_queue, before + after), timeout=60)
    assert cluster.owner(slot) is target
    assert moved > 200  # job hashes, state sets and indexes all went
    jobs = await cluster_queue.get_many(before + after)
    assert {job.state for job in jobs} == {JobState.COMPLETED}
    # A migration refuses every script until it ends (see cluster.py): nothing ran twice.
    assert {(job.attempts_made, job.stalls) for job in jobs} == {(1, 0)}
    owner = owner_client(cluster, cluster_queue)
    assert await _runs_per_job(owner, cluster_queue, before + after) == {1}
    assert source.client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    await assert_consistent(owner, cluster_queue.keys)
    await owner.aclose()


async def _runs_per_job(redis: Redis, queue: JobQueue, ids: list[str]) -> set[int]:
    """How many times each job's code ran, from the probe's own log line per run."""
    pipe = redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.llen(queue.keys.logs(job_id))
    return set(await pipe.execute())


async def _count(queue: JobQueue, state: JobState, at_least: int) -> bool:
    return (await queue.counts()).by_state[state] >= at_least


async def test_a_tls_cluster_that_announces_hostnames_is_reached_over_tls(
    queue_name: str, tmp_path: Path
) -> None:
    async with tls_cluster_node(tmp_path) as url:
        settings = Settings(redis_url=url, redis_cluster=True, queue_name=queue_name)
        client = connect(settings)
        try:
            queue = make_queue(settings, client)
            job = (await queue.enqueue(probe())).job
            assert (await queue.get(job.id)).state is JobState.PENDING
            connection = await client.connection_pool.get_connection()
            assert isinstance(connection, QueueSlotSSLConnection)
            assert connection.host == "localhost"  # the announced name the certificate names
            await client.connection_pool.release(connection)
        finally:
            await client.aclose()


async def test_redis_cluster_against_a_plain_server_says_so(redis_url: str) -> None:
    client = connect(Settings(redis_url=redis_url, redis_cluster=True))
    with pytest.raises(ConnectionError, match=r"REDIS_CLUSTER is set but .* is not a cluster"):
        await client.ping()
    await client.aclose()


def test_a_node_that_does_not_know_its_endpoint_is_reached_by_the_name_used() -> None:
    slots = [[0, 8191, ["?", 6379, "a"]], [8192, 16383, ["10.0.0.7", 6380, "b"]]]
    assert owner_of(100, slots, "config.example") == ("config.example", 6379)
    assert owner_of(9000, slots, "config.example") == ("10.0.0.7", 6380)
    with pytest.raises(ConnectionError, match="no primary serves slot 5"):
        owner_of(5, [[10, 20, ["h", 1, "c"]]], "config.example")
