"""`jobqueue artifacts ID [--out DIR]`: list a job's artifacts, or download each into DIR.

Downloads go through the API (`GET /jobs/{id}/artifacts/{name}`). With the S3 store the API
answers 307 to a presigned URL, which is fetched with a separate client: the API key is for
the API, and is never sent to S3.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

import httpx

from service.cli.client import (
    CLIENT_TIMEOUT,
    _api_message,
    _exit_code_for,
    call,
    client_parent,
    job_path,
    make_client,
    print_json,
)
from service.cli.common import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, CliError, out

# Downloads are read and written in pieces of this size, so a large artifact never sits in
# memory whole.
CHUNK_BYTES = 1 << 20


def cmd_artifacts(args: argparse.Namespace) -> int:
    """Print the job's artifacts; with --out, download each and print where it went."""
    with make_client(args) as client:
        listing = call(client, "GET", job_path(args.id, "/artifacts"))
        if args.out is None:
            print_json(listing)
            return EXIT_OK
        folder = Path(args.out)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CliError(f"cannot create --out folder {folder}: {exc}", EXIT_USAGE) from exc
        for item in listing["items"]:
            out.print(str(download(client, item, folder)), highlight=False, soft_wrap=True)
    return EXIT_OK


def download(client: httpx.Client, item: dict[str, Any], folder: Path) -> Path:
    """Download one listed artifact into `folder`; returns the file's path."""
    target = folder / safe_name(str(item["name"]))
    try:
        with client.stream("GET", str(item["download_url"])) as response:
            if response.status_code == 307:
                _fetch_redirect(response.headers["location"], target)
            else:
                _check(response)
                _save(response, target)
    except httpx.TransportError as exc:
        raise CliError(
            f"cannot download {item['name']} from {client.base_url}: {exc}", EXIT_UNAVAILABLE
        ) from exc
    return target


def safe_name(name: str) -> str:
    """`name` if it is a plain file name; the server's word is not enough to write anywhere."""
    if name in ("", ".", "..") or Path(name).name != name or "\\" in name:
        raise CliError(
            f"the API listed an artifact name that is not a file name: {name!r}", EXIT_UNAVAILABLE
        )
    return name


def _fetch_redirect(url: str, target: Path) -> None:
    # A fresh client: no X-API-Key header goes to the presigned URL's host.
    with httpx.Client(timeout=CLIENT_TIMEOUT) as plain, plain.stream("GET", url) as response:
        _check(response)
        _save(response, target)


def _check(response: httpx.Response) -> None:
    if not response.is_success:
        response.read()
        raise CliError(_api_message(response), _exit_code_for(response.status_code))


def _save(response: httpx.Response, target: Path) -> None:
    # Temp file and rename: an interrupted download never leaves a half file under the name.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in response.iter_bytes(CHUNK_BYTES):
                handle.write(chunk)
        # mkstemp makes the file private (0600); a download gets the usual permissions.
        Path(tmp).chmod(0o666 & ~_umask())
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    # Reading the umask means setting it; the CLI is single-threaded, so nothing sees the gap.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def add_artifact_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `jobqueue artifacts`."""
    p = sub.add_parser(
        "artifacts", parents=[client_parent()], help="list a job's artifacts, or download them"
    )
    p.add_argument("id", help="job id")
    p.add_argument("--out", metavar="DIR", help="download every artifact into DIR")
    p.set_defaults(func=cmd_artifacts)
