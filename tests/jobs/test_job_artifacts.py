"""Artifact storage: the local folder refuses to read outside itself; S3 (moto) round-trips."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from job_test_support import run_job
from moto import mock_aws

from service.artifacts import (
    ArtifactError,
    LocalArtifactStore,
    S3ArtifactStore,
    artifact_store_from,
    get_artifact_store,
)
from service.queue.errors import PermanentJobError
from service.settings import Settings, get_settings

BUCKET = "jobqueue-artifacts-test"


async def test_local_store_writes_under_its_folder_and_reads_back(tmp_path):
    store = LocalArtifactStore(tmp_path / "artifacts")
    artifact = await store.put("reports/abc/report.csv", b"a,b\n1,2\n", "text/csv")
    path = tmp_path / "artifacts" / "reports" / "abc" / "report.csv"
    assert artifact.uri == path.resolve().as_uri()
    assert (artifact.size_bytes, artifact.content_type) == (8, "text/csv")
    assert path.read_bytes() == b"a,b\n1,2\n"
    assert await store.get(artifact.uri) == b"a,b\n1,2\n"
    assert [p.name for p in path.parent.iterdir()] == ["report.csv"]  # no temp file left


async def test_local_store_refuses_uris_that_escape_its_folder(tmp_path):
    root = tmp_path / "artifacts"
    store = LocalArtifactStore(root)
    await store.put("inside/ok.txt", b"ok", "text/plain")
    (tmp_path / "secret.txt").write_text("secret")
    (root / "inside" / "link.txt").symlink_to(tmp_path / "secret.txt")
    escapes = [
        (tmp_path / "secret.txt").as_uri(),
        (root / ".." / "secret.txt").as_uri(),
        root.as_uri() + "/inside/%2E%2E/%2E%2E/secret.txt",
        (root / "inside" / "link.txt").as_uri(),
        "file:///etc/passwd",
    ]
    for uri in escapes:
        with pytest.raises(ArtifactError, match="outside the artifact folder"):
            await store.get(uri)
    for uri in ("s3://bucket/key", "http://example.com/x", "file://otherhost/etc/passwd"):
        with pytest.raises(ArtifactError, match="not a local artifact URI"):
            await store.get(uri)


async def test_local_store_refuses_keys_that_climb_out(tmp_path):
    store = LocalArtifactStore(tmp_path / "artifacts")
    for key in ("../x", "a/../../x", "a//b", "/abs", "a\\b"):
        with pytest.raises(ArtifactError, match="invalid artifact key"):
            await store.put(key, b"x", "text/plain")
    assert not (tmp_path / "x").exists()


async def test_missing_local_artifact_is_a_permanent_error(tmp_path):
    store = LocalArtifactStore(tmp_path)
    with pytest.raises(PermanentJobError, match="artifact not found"):
        await store.get((tmp_path / "nope.csv").as_uri())


@pytest.fixture
def s3(job_settings, monkeypatch) -> Iterator:
    """S3 under moto with an empty bucket, and settings that store artifacts in it."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ARTIFACT_BUCKET", BUCKET)
    get_settings.cache_clear()
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client
    get_settings.cache_clear()


async def test_s3_store_round_trips_with_content_type(s3):
    store = get_artifact_store()
    assert isinstance(store, S3ArtifactStore)
    artifact = await store.put("images/j1/output.png", b"\x89PNG...", "image/png")
    assert artifact.uri == f"s3://{BUCKET}/images/j1/output.png"
    head = s3.head_object(Bucket=BUCKET, Key="images/j1/output.png")
    assert (head["ContentType"], head["ContentLength"]) == ("image/png", 7)
    assert await store.get(artifact.uri) == b"\x89PNG..."


async def test_s3_store_reads_only_its_own_bucket_and_reports_missing_keys(s3):
    store = get_artifact_store()
    s3.create_bucket(Bucket="someone-else")
    s3.put_object(Bucket="someone-else", Key="k", Body=b"theirs")
    with pytest.raises(ArtifactError, match=f"must be s3://{BUCKET}/"):
        await store.get("s3://someone-else/k")
    with pytest.raises(ArtifactError, match="artifact not found"):
        await store.get(f"s3://{BUCKET}/missing.csv")
    with pytest.raises(ArtifactError, match="invalid artifact key"):
        await store.get(f"s3://{BUCKET}/a/../k")


async def test_jobs_write_their_outputs_to_s3_when_a_bucket_is_set(queue, s3):
    data = {"dataset": {"csv": "a,b\n1,2\n"}, "format": "csv"}
    result, _ = await run_job(queue, "report-generation", data)
    assert result["uri"].startswith(f"s3://{BUCKET}/report-generation/")
    key = result["uri"].removeprefix(f"s3://{BUCKET}/")
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert body == b"a,b\r\n1,2\r\n"


def test_the_local_folder_is_the_default_store(tmp_path):
    settings = Settings(artifact_dir=tmp_path, artifact_bucket=None)
    store = artifact_store_from(settings)
    assert isinstance(store, LocalArtifactStore)
    assert store.root == tmp_path
