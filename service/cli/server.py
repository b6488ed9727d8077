"""The server commands: `run` (the local supervisor), `api`, `worker`, `metrics`."""

from __future__ import annotations

import argparse
import signal
import time

from service.cli.common import (
    EXIT_OK,
    EXIT_REDIS_UNREACHABLE,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CliError,
    err,
    masked_url,
    port_number,
    redis_unreachable,
    refuse_taken_port,
)
from service.cli.supervisor import LocalStack
from service.logs import configure_logging
from service.processes import die_with_parent
from service.settings import Settings, get_settings

# The commands add_server_commands adds: `jobqueue <one of these>` parses without the client
# commands (service.cli.build_parser).
SERVER_COMMANDS = frozenset({"run", "api", "worker", "metrics"})
# `jobqueue worker`'s waits between tries of an unreachable Redis: 1, 2, 4 … s, at most 30 s.
REDIS_FIRST_RETRY_SECONDS = 1.0
REDIS_MAX_RETRY_SECONDS = 30.0


def cmd_api(args: argparse.Namespace) -> int:
    """Serve the HTTP API with uvicorn (one process; scale with more tasks)."""
    import uvicorn  # lazy: only the server commands need it

    from service.api.app import MissingApiKeysError, create_app

    die_with_parent()
    settings = get_settings()
    configure_logging(settings)
    if settings.redis_configured:
        url = settings.resolved_redis_url()
        if (reason := redis_unreachable(url)) is not None:
            # The API still starts: /readyz answers 503 until Redis does, which is what a load
            # balancer and `jobqueue run` wait on.
            err.print(
                f"jobqueue: Redis at {masked_url(url)} is unreachable ({reason}); "
                "the API answers 503 until it is",
                highlight=False,
                markup=False,
            )
    try:
        app = create_app(settings)
    except MissingApiKeysError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    # uvicorn re-raises the stop signal once its graceful shutdown is done, so the handler in
    # place before it decides the exit status. A requested stop is a success (exit 0), which is
    # what ECS and `jobqueue run` expect, not death by SIGTERM.
    signal.signal(signal.SIGTERM, lambda *_: None)
    host, port = args.host or settings.host, args.port or settings.port
    refuse_taken_port(host, port)
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            proxy_headers=True,
            # The ALB is the only peer in the cloud; trusting X-Forwarded-* from it is the point.
            forwarded_allow_ips="*",
            timeout_graceful_shutdown=10,
            log_config=None,  # ours (service.logs), so LOG_FORMAT=json covers uvicorn's too
            access_log=settings.access_log,
        )
    except SystemExit as exc:
        # uvicorn has logged why it could not start (its own lines above) and exits 3, which
        # is our "refused" code; a taken port was ruled out before, so say it failed to start.
        if exc.code not in (None, 0):
            raise CliError(
                f"the API could not start on {host}:{port} (see the lines above)", EXIT_UNAVAILABLE
            ) from exc
    return EXIT_OK


def cmd_worker(_: argparse.Namespace) -> int:
    """Run WORKER_COUNT worker processes until SIGTERM."""
    from service.worker import run_workers  # lazy: imports every job type

    die_with_parent()
    settings = get_settings()
    configure_logging(settings)
    wait_for_redis(settings)
    return run_workers(settings)


def wait_for_redis(settings: Settings) -> None:
    """Retry an unreachable Redis with doubling waits and a countdown; give up with
    EXIT_REDIS_UNREACHABLE after REDIS_CONNECT_ATTEMPTS (the workers would only restart
    forever, each time with a traceback)."""
    if not settings.redis_configured:
        raise CliError("set REDIS_URL or REDIS_HOST (or use `jobqueue run`)", EXIT_USAGE)
    url = settings.resolved_redis_url()
    wait = REDIS_FIRST_RETRY_SECONDS
    for attempt in range(1, settings.redis_connect_attempts + 1):
        reason = redis_unreachable(url)
        if reason is None:
            return
        where = f"jobqueue: Redis at {masked_url(url)} is unreachable ({reason})"
        if attempt == settings.redis_connect_attempts:
            raise CliError(
                f"Redis at {masked_url(url)} is unreachable ({reason}); gave up after "
                f"{attempt} attempt(s) (REDIS_CONNECT_ATTEMPTS)",
                EXIT_REDIS_UNREACHABLE,
            )
        for left in range(int(wait), 0, -1):
            # One line rewritten each second on a terminal; one line per attempt in a log.
            end = "\r" if err.is_terminal else "\n"
            if err.is_terminal or left == int(wait):
                err.print(
                    f"{where}; retrying in {left} s (attempt {attempt + 1} of "
                    f"{settings.redis_connect_attempts})",
                    end=end,
                    highlight=False,
                    markup=False,
                )
            time.sleep(1)
        wait = min(wait * 2, REDIS_MAX_RETRY_SECONDS)


def cmd_metrics(args: argparse.Namespace) -> int:
    """Publish queue metrics every period (or once)."""
    from service.metrics.task import run_metrics  # lazy: boto3 is slow to import

    die_with_parent()
    settings = get_settings()
    configure_logging(settings)
    return run_metrics(settings, once=args.once, dry_run=args.dry_run)


def cmd_run(args: argparse.Namespace) -> int:
    """The local all-in-one: embedded Valkey if needed, API, workers and metrics loop."""
    # Not get_settings(): the supervisor must not read RUN_ENV_FILE, which names the Redis of
    # an instance it is about to replace (or one killed before it could remove the file).
    settings = Settings(_env_file=".env")
    return LocalStack(settings, args.host or settings.host, args.port or settings.port).run()


def add_server_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, func, text in (
        (
            "run",
            cmd_run,
            "run everything locally: Valkey (embedded if needed), API, workers, metrics",
        ),
        ("api", cmd_api, "serve the HTTP API"),
    ):
        parser = sub.add_parser(name, help=text, description=text)
        parser.add_argument("--host", help="listen address (default: HOST or 127.0.0.1)")
        parser.add_argument("--port", type=port_number, help="listen port (default: PORT or 8000)")
        parser.set_defaults(func=func)
    sub.add_parser("worker", help="run WORKER_COUNT worker processes").set_defaults(func=cmd_worker)
    metrics = sub.add_parser("metrics", help="publish queue metrics every period")
    metrics.add_argument("--once", action="store_true", help="publish one period and exit")
    metrics.add_argument("--dry-run", action="store_true", help="print instead of publishing")
    metrics.set_defaults(func=cmd_metrics)
