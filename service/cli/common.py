"""What every `jobqueue` command shares: exit codes, the error it reports, its consoles."""

from __future__ import annotations

import argparse
import socket
from urllib.parse import urlsplit, urlunsplit

from rich.console import Console

from service.settings import Settings

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_UNAVAILABLE = 4
EXIT_REDIS_UNREACHABLE = 5
EXIT_INTERRUPTED = 130

# Where `jobqueue run` keeps the key it generated, so restarts and client commands reuse it.
API_KEY_FILE = "api-key"

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class CliError(Exception):
    """A failure to report as one sentence with an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def stored_api_key(settings: Settings) -> str | None:
    """The key `jobqueue run` generated, if there is one."""
    path = settings.data_dir / API_KEY_FILE
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None


def port_number(text: str) -> int:
    """A TCP port for `--port`; anything else is a usage error (exit 2), not a crash."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return port


def masked_url(url: str) -> str:
    """A Redis URL fit for a terminal or a log: the password replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:" if parts.username else ":"
    host = parts.hostname or ""
    netloc = f"{user}***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def redis_unreachable(url: str) -> str | None:
    """Why Redis at `url` does not answer a PING, or None when it does."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # One attempt, bounded: the caller decides how to retry and says so.
    client = redis.Redis.from_url(
        url, socket_connect_timeout=3, socket_timeout=3, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        return str(exc) or type(exc).__name__
    finally:
        client.close()
    return None


def refuse_taken_port(host: str, port: int) -> None:
    """Raise a usage error (exit 2) naming the port if nothing could listen on it now.

    Checked before a server starts anything, so a taken port is told as such and not as
    whatever failed later (uvicorn exits the same way for every start-up failure).
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CliError(
                f"port {port} on {host} is taken ({exc.strerror}); "
                "pick another with --port N or PORT=N",
                EXIT_USAGE,
            ) from exc
