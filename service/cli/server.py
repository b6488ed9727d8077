"""The server commands: `run` (the local supervisor), `api`, `worker`, `metrics`."""

from __future__ import annotations

import argparse
import signal

from service.cli.common import EXIT_OK, EXIT_USAGE, CliError, port_number
from service.cli.supervisor import LocalStack
from service.settings import get_settings


def cmd_api(args: argparse.Namespace) -> int:
    """Serve the HTTP API with uvicorn (one process; scale with more tasks)."""
    import uvicorn  # lazy: only the server commands need it

    from service.api.app import MissingApiKeysError, create_app

    settings = get_settings()
    try:
        app = create_app(settings)
    except MissingApiKeysError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    # uvicorn re-raises the stop signal once its graceful shutdown is done, so the handler in
    # place before it decides the exit status. A requested stop is a success (exit 0), which is
    # what ECS and `jobqueue run` expect, not death by SIGTERM.
    signal.signal(signal.SIGTERM, lambda *_: None)
    host, port = args.host or settings.host, args.port or settings.port
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            proxy_headers=True,
            # The ALB is the only peer in the cloud; trusting X-Forwarded-* from it is the point.
            forwarded_allow_ips="*",
            timeout_graceful_shutdown=10,
        )
    except SystemExit as exc:
        # uvicorn logs why it could not start (its own line above) and exits 3, which is our
        # "refused" code; say it in one sentence with the configuration exit code instead.
        if exc.code not in (None, 0):
            raise CliError(
                f"the API could not listen on {host}:{port} (address in use or unknown host)",
                EXIT_USAGE,
            ) from exc
    return EXIT_OK


def cmd_worker(_: argparse.Namespace) -> int:
    """Run WORKER_COUNT worker processes until SIGTERM."""
    from service.worker import run_workers  # lazy: imports every job type

    return run_workers(get_settings())


def cmd_metrics(args: argparse.Namespace) -> int:
    """Publish queue metrics every period (or once)."""
    from service.metrics.task import run_metrics  # lazy: boto3 is slow to import

    return run_metrics(get_settings(), once=args.once, dry_run=args.dry_run)


def cmd_run(args: argparse.Namespace) -> int:
    """The local all-in-one: embedded Valkey if needed, API, workers and metrics loop."""
    settings = get_settings()
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
