"""What a worker holds, by attempt: letting go of one attempt never drops the next."""

from __future__ import annotations

from service.queue.consumer import Delivery
from service.worker.holdings import HeldState, Holdings


def _delivery(job_id: str, attempt: int) -> Delivery:
    return Delivery(job_id=job_id, message="{}", attempt=attempt, pending_since_ms=0)


def test_letting_go_of_a_failed_attempt_keeps_its_retry_that_was_dequeued_meanwhile() -> None:
    holdings = Holdings()
    holdings.hold([_delivery("job-1", 1)])
    first = holdings.get("job-1")
    assert first is not None
    holdings.take(1)
    # Attempt 1 failed with no backoff: while its end is being written, the same worker
    # dequeues attempt 2 of the same job.
    holdings.hold([_delivery("job-1", 2)])
    holdings.release(first)
    retry = holdings.get("job-1")
    assert retry is not None
    assert (retry.delivery.attempt, retry.state) == (2, HeldState.BUFFERED)
    holdings.release(retry)
    assert holdings.get("job-1") is None
