"""`jobqueue import-taskiq-redis`: move waiting taskiq-redis messages into this queue.

Exit codes: 0 every waiting message moved; 1 some were left in the source (not taskiq
messages, or stream entries other consumers hold); 2 bad usage, or task names no job type
answers to (nothing moved); 4 a Redis server could not be reached (re-run: nothing is lost).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rich.progress import Progress

from service.cli.common import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, CliError, err, out
from service.settings import get_settings

if TYPE_CHECKING:
    from service.migration.taskiq_redis_import import Source

# taskiq-redis's default consumer group (service.migration.taskiq_redis_import.TASKIQ_GROUP,
# not imported here: the job types and the queue layer it loads would slow every CLI command).
DEFAULT_GROUP = "taskiq"

EXIT_LEFT_BEHIND = 1


def add_import_command(sub: Any) -> None:
    """Register `import-taskiq-redis` on the `jobqueue` subparsers."""
    parser = sub.add_parser(
        "import-taskiq-redis",
        help="move waiting taskiq-redis messages (a list or a stream) into this queue",
        description=(
            "Move the messages waiting in a taskiq-redis ListQueueBroker list or "
            "RedisStreamBroker stream into this queue (REDIS_URL, QUEUE_NAME), each once; "
            "safe to kill and re-run. Exit: 0 all moved, 1 some left behind, 2 usage or "
            "unknown task names, 4 unreachable."
        ),
    )
    parser.add_argument("--from", dest="source_url", required=True, metavar="URL",
                        help="the taskiq-redis Redis, e.g. redis://old-host:6379/0")  # fmt: skip
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--list", metavar="NAME", help="a ListQueueBroker's queue_name")
    which.add_argument("--stream", metavar="NAME", help="a RedisStreamBroker's queue_name")
    parser.add_argument("--group", default=DEFAULT_GROUP,
                        help="the stream's consumer group (default: %(default)s)")  # fmt: skip
    parser.add_argument("--batch", type=int, default=500,
                        help="messages per enqueue (default: %(default)s)")  # fmt: skip
    parser.add_argument("--dry-run", action="store_true",
                        help="print waiting messages per task name; change nothing")  # fmt: skip
    parser.set_defaults(func=cmd_import_taskiq_redis)


def cmd_import_taskiq_redis(args: argparse.Namespace) -> int:
    """Run the import (or the dry run); returns the exit status."""
    if args.batch < 1:
        raise CliError("--batch must be at least 1", EXIT_USAGE)
    from service.migration.taskiq_redis_import import Source  # see DEFAULT_GROUP

    source = Source("list", args.list) if args.list else Source("stream", args.stream, args.group)
    try:
        return asyncio.run(_run(args, source))
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise CliError(
            f"Redis unreachable ({exc}); nothing was lost, re-run", EXIT_UNAVAILABLE
        ) from exc


async def _run(args: argparse.Namespace, source: Source) -> int:
    # Imported here, not at the top: see DEFAULT_GROUP.
    from service.jobs import load_job_types
    from service.migration.taskiq_redis_import import TaskiqRedisImport
    from service.queue.connection import connect, make_queue

    settings = get_settings()
    registry = load_job_types(settings.extra_job_modules)
    source_redis = Redis.from_url(args.source_url)
    queue_redis = connect(settings)
    try:
        job = TaskiqRedisImport(
            source_redis, source, queue=make_queue(settings, queue_redis),
            settings=settings, registry=registry, batch_size=args.batch,
        )  # fmt: skip
        counts = await job.count_by_task()
        elsewhere = await job.pending_elsewhere()
        if args.dry_run:
            for name, count in sorted(counts.items()):
                out.print(f"{count:>9}  {name}", highlight=False, markup=False)
            out.print(f"{sum(counts.values()):>9}  waiting in all", highlight=False)
            if elsewhere:
                out.print(f"{elsewhere:>9}  held by other consumers (left alone)")
            return EXIT_OK
        unknown = job.unknown_names(counts)
        if unknown:
            raise CliError(
                "no job type for task name(s) " + ", ".join(unknown) + " (register them, "
                "e.g. through JOB_MODULES); nothing was moved",
                EXIT_USAGE,
            )
        with Progress(console=err, transient=False) as progress:
            bar = progress.add_task("importing", total=sum(counts.values()) or None)
            summary = await job.run(lambda n: progress.advance(bar, n))
    finally:
        await source_redis.aclose()
        await queue_redis.aclose()
    out.print(
        f"imported {summary.imported}, already imported {summary.already_imported}, "
        f"left behind {summary.left_behind} ({summary.left_invalid} not taskiq messages, "
        f"{summary.left_pending} held by other consumers)",
        highlight=False,
    )
    return EXIT_LEFT_BEHIND if summary.left_behind else EXIT_OK
