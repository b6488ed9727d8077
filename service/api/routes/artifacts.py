"""A job's artifacts: list them, and download one (streamed from the local folder, or a
redirect to a short-lived presigned S3 URL). Only names the job's own result lists are served.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Annotated, Any, BinaryIO
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import BaseModel, Field

from service.api.deps import Authenticated, QueueDep, SettingsDep
from service.api.errors import ApiError, ErrorBody, responses
from service.api.routes.jobs import JobId
from service.api.routing import TemplateRoute
from service.artifacts import (
    ArtifactRef,
    LocalArtifactStore,
    S3ArtifactStore,
    artifact_store_from,
    artifacts_in,
)
from service.queue.models import Job

router = APIRouter(tags=["artifacts"], dependencies=[Authenticated], route_class=TemplateRoute)

# Long enough to start a download of a large file on a slow link (S3 only checks expiry when
# the request starts), short enough that a URL leaked into a log or chat is soon useless.
PRESIGN_SECONDS = 300
# Files are sent in pieces of this size, so a large artifact never sits in memory whole.
CHUNK_BYTES = 1 << 20
# The names `artifacts_in` gives: one key segment, so never a path. Anything else is a 422.
NAME_PATTERN = r"^[A-Za-z0-9._-]{1,200}$"
ArtifactName = Annotated[
    str,
    Path(pattern=NAME_PATTERN, description="An artifact name from `GET /jobs/{id}/artifacts`."),
]
DOWNLOAD_OK: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The artifact's bytes (local store), with its `Content-Type` and "
        "`Content-Disposition: attachment; filename=...`",
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    },
    307: {
        "description": f"S3 store: `Location` is a presigned URL, valid for {PRESIGN_SECONDS} s, "
        "that needs no API key (do not forward the key to it)",
        "headers": {"Location": {"schema": {"type": "string"}, "description": "Presigned URL"}},
    },
    404: {
        "model": ErrorBody,
        "description": "No such job (`job_not_found`), the job has no artifact of that name "
        "(`artifact_not_found`, naming the ones it has), or its file is gone (`artifact_missing`)",
    },
}


class ArtifactPublic(BaseModel):
    """One artifact of a job."""

    name: str = Field(examples=["output.png"])
    uri: str = Field(description="Where it is stored: `file:///...` or `s3://bucket/key`.")
    size_bytes: int | None = Field(description="Size in bytes, when the job's result says.")
    content_type: str = Field(examples=["image/png"])
    download_url: str = Field(
        description="This API's download route for it, relative to the API's base URL.",
        examples=["/jobs/0f3c.../artifacts/output.png"],
    )


class ArtifactList(BaseModel):
    """A job's artifacts: the `file://` and `s3://` URIs in its result that this API serves."""

    job_id: str
    items: list[ArtifactPublic]


Store = LocalArtifactStore | S3ArtifactStore


def get_store(request: Request, settings: SettingsDep) -> Store:
    """The app's artifact store, made on first use (a sync dependency: building an S3 client
    blocks, so FastAPI runs it in a thread)."""
    store: Store | None = getattr(request.app.state, "artifact_store", None)
    if store is None:
        made = artifact_store_from(settings)
        assert isinstance(made, LocalArtifactStore | S3ArtifactStore)  # the only two stores
        store = request.app.state.artifact_store = made
    return store


StoreDep = Annotated[Store, Depends(get_store)]


def served(job: Job, store: Store) -> list[ArtifactRef]:
    """The artifacts in the job's result that `store` owns (others cannot be downloaded here)."""
    return [ref for ref in artifacts_in(job.result) if store.owns(ref.uri)]


def download_path(job_id: str, name: str) -> str:
    """The download route of one artifact."""
    return f"/jobs/{quote(job_id, safe='')}/artifacts/{quote(name, safe='')}"


@router.get("/jobs/{id}/artifacts", responses=responses(404))
async def list_artifacts(id: JobId, queue: QueueDep, store: StoreDep) -> ArtifactList:
    """The job's artifacts with their download URLs; empty until the job has a result."""
    job = await queue.get(id)
    items = [
        ArtifactPublic(
            name=ref.name, uri=ref.uri, size_bytes=ref.size_bytes,
            content_type=ref.content_type, download_url=download_path(job.id, ref.name),
        )
        for ref in served(job, store)
    ]  # fmt: skip
    return ArtifactList(job_id=job.id, items=items)


@router.get(
    "/jobs/{id}/artifacts/{name}",
    response_class=Response,
    responses={**responses(404), **DOWNLOAD_OK},
)
async def download_artifact(
    id: JobId, name: ArtifactName, queue: QueueDep, store: StoreDep
) -> Response:
    """Download one artifact: its bytes from the local store, or a 307 to S3."""
    job = await queue.get(id)
    ref = _named(job, name, store)
    if isinstance(store, S3ArtifactStore):
        url = await store.presigned_url(ref.uri, ref.name, ref.content_type, PRESIGN_SECONDS)
        return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    path = store.path_of(ref.uri)  # inside ARTIFACT_DIR, or `served` had left it out
    try:
        # Opened here, not while sending: a file that is gone is a clean 404, and one deleted
        # mid-download is still read to the end through the open handle.
        handle = await asyncio.to_thread(path.open, "rb")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise _missing(job, ref) from None
    size = os.fstat(handle.fileno()).st_size
    headers = {
        "Content-Length": str(size),
        # Names are key segments ([A-Za-z0-9._-]), so quoting them is all the escaping needed.
        "Content-Disposition": f'attachment; filename="{ref.name}"',
        "Cache-Control": "no-store",
    }
    return StreamingResponse(_chunks(handle), media_type=ref.content_type, headers=headers)


async def _chunks(handle: BinaryIO) -> AsyncIterator[bytes]:
    # The whole file, in pieces: no Range support, so the only success status is 200.
    try:
        while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
            yield chunk
    finally:
        handle.close()


def _named(job: Job, name: str, store: Store) -> ArtifactRef:
    refs = served(job, store)
    for ref in refs:
        if ref.name == name:
            return ref
    names = [ref.name for ref in refs]
    has = f"it has: {', '.join(names)}" if names else f"it has none (status {job.state})"
    raise ApiError(
        404,
        "artifact_not_found",
        f"job {job.id!r} has no artifact named {name!r}; {has}",
        {"job_id": job.id, "name": name, "available": names},
    )


def _missing(job: Job, ref: ArtifactRef) -> ApiError:
    return ApiError(
        404,
        "artifact_missing",
        f"artifact {ref.name!r} of job {job.id!r} is no longer in the store ({ref.uri})",
        {"job_id": job.id, "name": ref.name, "uri": ref.uri},
    )
