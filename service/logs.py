"""The one logging set-up of the API, the workers and the metrics loop.

Plain lines for a terminal, or one JSON object per line (LOG_FORMAT=json) that CloudWatch Logs
Insights splits into fields by itself (`fields level, logger, message | filter level="ERROR"`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from service.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# taskiq's receiver logs every failing job with its traceback. The worker logs one line per
# failure itself (type, id, attempt, error) and keeps the traceback on the job, where the API and
# the dashboard show it; a terminal or a log bill full of expected failures helps no one.
JOB_FAILURE_LOGGER = "taskiq.receiver.receiver"
JOB_FAILURE_MESSAGE = "Exception found while executing function."
# A failure's error in its log line: a job's message can be long or span lines (a pydantic
# ValidationError does); the line keeps the start, the job keeps all of it.
ERROR_IN_LINE_CHARS = 300


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _not_a_job_failure(record: logging.LogRecord) -> bool:
    return record.getMessage() != JOB_FAILURE_MESSAGE


def one_line(text: str, limit: int = ERROR_IN_LINE_CHARS) -> str:
    """`text` with its whitespace runs collapsed to single spaces, cut to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def quiet_job_failures() -> None:
    """Drop taskiq's traceback of a failing job in this process; errors of the worker itself
    (every other record) keep theirs. Worker processes call it whatever set logging up (the
    `jobqueue worker` command, `run_workers`, `taskiq worker`): the filter is per process."""
    logging.getLogger(JOB_FAILURE_LOGGER).addFilter(_not_a_job_failure)  # added once only


def configure_logging(settings: Settings) -> None:
    """Set up the root logger for this process (and the processes it forks)."""
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    quiet_job_failures()
