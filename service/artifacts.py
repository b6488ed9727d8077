"""Artifact storage: where job outputs (processed datasets, images, reports) live.

Two stores, chosen by settings: a local folder (ARTIFACT_DIR, the default) or an S3 bucket
(ARTIFACT_BUCKET). An artifact is named by a URI that says where it is:

- `file:///abs/path/inside/ARTIFACT_DIR/...` for the local store;
- `s3://bucket/key` for S3.

Standard schemes rather than an `artifact://` one so that a person (or `aws s3 cp`) can use a
URI as it is. Jobs take their inputs by the same URIs, so a store only reads what it owns:
local reads must resolve inside the artifact folder (no `..`, no symlink escapes), S3 reads
must name the configured bucket. Anything else is a PermanentJobError: retrying cannot help.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol
from urllib.parse import unquote, urlsplit

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel

from service.queue.errors import PermanentJobError
from service.settings import Settings, get_settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# A key segment: no empty, "." or ".." parts, no backslashes; keeps keys portable between
# the local store and S3 and keeps local writes inside the folder.
_SEGMENT = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9._-]{1,200}$")
# AWS error codes that mean "slow down" or "try later": the job retries with its backoff.
RETRYABLE_AWS_CODES = frozenset(
    {
        "Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException",
        "RequestLimitExceeded", "SlowDown", "RequestTimeout", "RequestTimeoutException",
        "ServiceUnavailable", "InternalError", "InternalFailure",
        # Credentials that expired mid-job are refreshed by the next attempt's client.
        "ExpiredToken", "ExpiredTokenException", "RequestExpired",
        "ProvisionedThroughputExceededException",
    }
)  # fmt: skip


class ArtifactError(PermanentJobError):
    """An artifact URI that this store will not or cannot read (bad input: never retried)."""


class Artifact(BaseModel):
    """A stored artifact."""

    uri: str
    size_bytes: int
    content_type: str


class ArtifactStore(Protocol):
    """Where job outputs are written and job inputs read."""

    async def put(self, key: str, data: bytes, content_type: str) -> Artifact:
        """Store `data` under `key` (slash-separated segments); returns its URI."""

    async def get(self, uri: str) -> bytes:
        """The bytes of the artifact at `uri`; ArtifactError if it is not this store's."""


def artifact_key(*parts: str) -> str:
    """A key from segments, refusing any that could climb out of the store ("..", "/")."""
    for part in parts:
        if not _SEGMENT.match(part):
            raise ArtifactError(f"invalid artifact key segment {part!r}")
    return "/".join(parts)


def raise_for_aws_error(exc: Exception, action: str) -> NoReturn:
    """Re-raise an AWS failure as retryable (throttling, network, 5xx) or permanent.

    Only call from an `except` block; always raises.
    """
    if isinstance(exc, ClientError):
        error: Any = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in RETRYABLE_AWS_CODES or status >= 500 or status == 429:
            raise RuntimeError(f"{action}: AWS says try later ({code}): {exc}") from exc
        raise PermanentJobError(f"{action}: {code or status}: {exc}") from exc
    # BotoCoreError covers endpoint/connection/read-timeout errors: the network, so retry.
    raise RuntimeError(f"{action}: {exc}") from exc


@dataclass(frozen=True)
class LocalArtifactStore:
    """Artifacts as files under one folder."""

    root: Path

    @property
    def _root(self) -> Path:
        return self.root.expanduser().resolve()

    async def put(self, key: str, data: bytes, content_type: str) -> Artifact:
        """Write the file atomically (temp file + rename), so readers never see half of it."""
        path = self._root.joinpath(*artifact_key(*key.split("/")).split("/"))
        await asyncio.to_thread(write_atomic, path, data)
        return Artifact(uri=path.as_uri(), size_bytes=len(data), content_type=content_type)

    async def get(self, uri: str) -> bytes:
        """Read a `file://` URI that resolves inside the artifact folder."""
        path = self.path_of(uri)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ArtifactError(f"artifact not found: {uri}") from exc

    def path_of(self, uri: str) -> Path:
        """The local path of a URI; ArtifactError unless it is inside the artifact folder."""
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise ArtifactError(f"not a local artifact URI (want file:///...): {uri!r}")
        # resolve() follows symlinks and "..", so the check below sees where a read really goes.
        path = Path(unquote(parts.path)).resolve()
        if not path.is_relative_to(self._root):
            raise ArtifactError(f"artifact URI is outside the artifact folder: {uri!r}")
        return path

    def owns(self, uri: str) -> bool:
        """Whether `uri` names a file inside this store's folder (it may not exist)."""
        try:
            self.path_of(uri)
        except ArtifactError:
            return False
        return True


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file via a temp file and rename, so no reader ever sees part of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class S3ArtifactStore:
    """Artifacts as objects in one S3 bucket (boto3 calls run in a thread)."""

    def __init__(self, bucket: str, client: S3Client) -> None:
        self.bucket = bucket
        self.client = client

    async def put(self, key: str, data: bytes, content_type: str) -> Artifact:
        """Upload the object."""
        key = artifact_key(*key.split("/"))
        try:
            await asyncio.to_thread(
                self.client.put_object,
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type,
            )  # fmt: skip
        except (ClientError, BotoCoreError) as exc:
            raise_for_aws_error(exc, f"storing s3://{self.bucket}/{key}")
        return Artifact(
            uri=f"s3://{self.bucket}/{key}", size_bytes=len(data), content_type=content_type
        )

    async def get(self, uri: str) -> bytes:
        """Download an `s3://` URI in this store's bucket."""
        key = self.key_of(uri)
        try:
            response = await asyncio.to_thread(self.client.get_object, Bucket=self.bucket, Key=key)
            body: bytes = await asyncio.to_thread(response["Body"].read)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ArtifactError(f"artifact not found: {uri}") from exc
            raise_for_aws_error(exc, f"reading {uri}")
        except BotoCoreError as exc:
            raise_for_aws_error(exc, f"reading {uri}")
        return body

    def key_of(self, uri: str) -> str:
        """The object key of a URI; ArtifactError unless it is in this store's bucket."""
        parts = urlsplit(uri)
        if parts.scheme != "s3" or parts.netloc != self.bucket:
            raise ArtifactError(f"artifact URI must be s3://{self.bucket}/...: {uri!r}")
        return artifact_key(*parts.path.lstrip("/").split("/"))

    def owns(self, uri: str) -> bool:
        """Whether `uri` names an object in this store's bucket (it may not exist)."""
        try:
            self.key_of(uri)
        except ArtifactError:
            return False
        return True

    async def presigned_url(
        self, uri: str, filename: str, content_type: str, expires_seconds: int
    ) -> str:
        """A GET URL for the object that works without credentials for `expires_seconds`.

        S3 answers it with `content_type` and `Content-Disposition: attachment` naming
        `filename`. Signing is local, but the first call may fetch the task role's credentials,
        hence the thread.
        """
        params = {
            "Bucket": self.bucket,
            "Key": self.key_of(uri),
            "ResponseContentType": content_type,
            "ResponseContentDisposition": f'attachment; filename="{filename}"',
        }
        url: str = await asyncio.to_thread(
            self.client.generate_presigned_url,
            "get_object", Params=params, ExpiresIn=expires_seconds,
        )  # fmt: skip
        return url


@dataclass(frozen=True)
class ArtifactRef:
    """An artifact a job's result names: its file name, URI and what the result says of it."""

    name: str
    uri: str
    size_bytes: int | None
    content_type: str


# Result fields that describe the one artifact URI beside them (the built-in types' results:
# `uri` or `output_uri` with `size_bytes` or `output_size_bytes`, and `content_type`).
_SIZE_FIELDS = ("size_bytes", "output_size_bytes")
_URI_SCHEMES = ("file://", "s3://")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def artifacts_in(result: Any) -> list[ArtifactRef]:
    """Every artifact URI in a job's result, once each and in order, named by its file name.

    Nothing records a job's artifacts apart from its result, so they are read from there: any
    string that is a `file://` or `s3://` URI, wherever it sits. A name the job used twice (two
    folders, one file name) gets a `2-`, `3-`... prefix, so every name is unique; names are
    key segments (`artifact_key`), so one is always a single safe path segment.
    """
    found: list[ArtifactRef] = []
    names: set[str] = set()
    uris: set[str] = set()
    for uri, siblings in _uris_in(result):
        if uri in uris:
            continue
        uris.add(uri)
        base = artifact_name(uri)
        name = base
        for n in range(2, len(found) + 3):
            if name not in names:
                break
            name = f"{n}-{base}"
        names.add(name)
        found.append(_ref(name, uri, siblings))
    return found


def artifact_name(uri: str) -> str:
    """The file name of a URI, made a valid key segment (other characters become `_`)."""
    base = _UNSAFE.sub("_", unquote(urlsplit(uri).path).rsplit("/", 1)[-1])[:200]
    return base if _SEGMENT.match(base) else "artifact"


def _uris_in(
    value: Any, siblings: dict[str, Any] | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    # (uri, the object holding it if that object holds no other URI), depth first in order.
    if isinstance(value, str) and value.startswith(_URI_SCHEMES):
        yield value, siblings or {}
    elif isinstance(value, dict):
        uris = [v for v in value.values() if isinstance(v, str) and v.startswith(_URI_SCHEMES)]
        for item in value.values():
            yield from _uris_in(item, value if len(set(uris)) == 1 else None)
    elif isinstance(value, list):
        for item in value:
            yield from _uris_in(item)


def _ref(name: str, uri: str, siblings: dict[str, Any]) -> ArtifactRef:
    size = next((siblings[f] for f in _SIZE_FIELDS if isinstance(siblings.get(f), int)), None)
    content_type = siblings.get("content_type")
    if not isinstance(content_type, str) or not content_type:
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return ArtifactRef(name=name, uri=uri, size_bytes=size, content_type=content_type)


def artifact_store_from(settings: Settings) -> ArtifactStore:
    """The store the settings choose: S3 when ARTIFACT_BUCKET is set, else the local folder."""
    if settings.artifact_bucket:
        # boto3 costs about a second to import; processes that never touch S3 skip it.
        import boto3
        from botocore.config import Config

        # SigV4 everywhere: boto3 would otherwise presign with the deprecated SigV2 in
        # us-east-1, whose URLs newer buckets and regions refuse.
        config = Config(signature_version="s3v4")
        client = boto3.client("s3", region_name=settings.aws_region, config=config)
        return S3ArtifactStore(settings.artifact_bucket, client)
    return LocalArtifactStore(settings.artifact_dir)


def get_artifact_store() -> ArtifactStore:
    """The process's artifact store, from the current settings."""
    return artifact_store_from(get_settings())
