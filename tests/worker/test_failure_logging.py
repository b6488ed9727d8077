"""An expected job failure is one log line (type, id, attempt, error); its traceback stays on
the job. Errors of the worker itself keep their tracebacks in the log."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from service.logs import JOB_FAILURE_LOGGER, JOB_FAILURE_MESSAGE, quiet_job_failures
from service.queue.models import JobSpec
from service.queue.queue import JobQueue
from service.queue.states import JobState
from tests.support.workers import all_done, running_worker, wait_until, worker_env

FAILURE_LINE = re.compile(
    r" WARNING service\.worker\.runtime: job failed: type=(?P<type>\S+) id=(?P<id>\S+) "
    r"attempt=(?P<attempt>\d+)/(?P<max>\d+) error=(?P<error>.+)$"
)


@pytest.mark.slow
async def test_a_failing_job_is_one_line_without_traceback(
    queue: JobQueue, redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    log_path = tmp_path / "worker.log"
    # Last of two attempts: the line says which attempt of how many failed.
    raised = await queue.enqueue(
        JobSpec(
            type="noop", data={"fail_first_attempts": 5}, attempts=2, backoff={"delay_seconds": 0}
        )
    )
    # A bad payload (never retried): pydantic's error spans several lines, the log line not.
    invalid = await queue.enqueue(JobSpec(type="noop", data={"sleep_seconds": "soon"}))
    ids = [raised.job.id, invalid.job.id]
    with running_worker(worker_env(redis_url, queue_name, worker_count=1), log_path):
        await wait_until(lambda: all_done(queue, ids), timeout=30)
    text = log_path.read_text()

    assert "Traceback" not in text, text
    lines = {job_id: [line for line in text.splitlines() if job_id in line] for job_id in ids}
    assert [len(found) for found in lines.values()] == [2, 1], text  # one per failed attempt
    fields = [FAILURE_LINE.search(line) for line in lines[raised.job.id] + lines[invalid.job.id]]
    assert all(fields), text
    assert [(m["type"], m["id"], m["attempt"], m["max"]) for m in fields if m] == [
        ("noop", raised.job.id, "1", "2"),
        ("noop", raised.job.id, "2", "2"),
        ("noop", invalid.job.id, "1", "1"),
    ]
    errors = [m["error"] for m in fields if m]
    assert errors[1] == "RuntimeError: noop fails its first 5 attempt(s); this is 2"
    assert errors[2].startswith(
        "PermanentJobError: invalid payload: 1 validation error for NoopPayload sleep_seconds "
    )

    # The traceback is kept where the API and the dashboard read it.
    for job in await queue.get_many(ids):
        assert job.state == JobState.FAILED
        assert job.traceback is not None and job.traceback.startswith("Traceback"), job.traceback
    stored = await queue.get(raised.job.id)
    assert stored is not None and stored.traceback is not None
    assert 'noop.py", line' in stored.traceback


def test_worker_errors_keep_their_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    quiet_job_failures()
    taskiq_log = logging.getLogger(JOB_FAILURE_LOGGER)
    own_log = logging.getLogger("service.worker.runtime")
    with caplog.at_level(logging.INFO):
        for logger, message in [
            (taskiq_log, JOB_FAILURE_MESSAGE),  # a job's code raised: dropped
            (taskiq_log, "Can't set result in result backend."),
            (own_log, "could not record how job j1 ended"),
        ]:
            try:
                raise ConnectionError("Redis went away")
            except ConnectionError:
                logger.exception(message)
    assert [(r.name, r.getMessage(), bool(r.exc_info)) for r in caplog.records] == [
        (JOB_FAILURE_LOGGER, "Can't set result in result backend.", True),
        ("service.worker.runtime", "could not record how job j1 ended", True),
    ]
    assert all(
        "ConnectionError: Redis went away" in r.exc_text for r in caplog.records if r.exc_text
    )
