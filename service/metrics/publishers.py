"""Where a period's metrics go: CloudWatch, stdout (`--dry-run`), or only the log (local).

CloudWatch limits (PutMetricData API reference, checked 2026-11): at most 1000 metrics per
request and 1 MB per HTTP POST. Batches stay inside both. Throttling and 5xx answers are retried
here with capped, jittered exponential backoff; botocore's own retries are switched off so the
two layers do not multiply into a publish that outlives its period.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

from service.metrics.contract import NAMESPACE, Dimension
from service.metrics.datums import Datum

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import MetricDatumTypeDef

log = logging.getLogger(__name__)

MAX_METRICS_PER_CALL = 1000
# 1 MB is the API's limit; the estimate below is an upper bound (the verbose query protocol),
# and the margin covers the request envelope.
MAX_PAYLOAD_BYTES = 900_000
THROTTLING_CODES = frozenset(
    {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"}
)
# 4 attempts with delays of at most 0.5, 1, 2 s: a throttled publish gives up within a few
# seconds, well inside a 60 s period, and the next period publishes fresh values anyway.
MAX_ATTEMPTS = 4
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 8.0

Sleep = Callable[[float], None]


class Publisher(Protocol):
    """Sends one period's data points somewhere."""

    def publish(self, datums: Sequence[Datum], at: datetime) -> None:
        """Send `datums`, stamped `at` unless a datum carries its own time."""


def metric_data(
    datums: Sequence[Datum], at: datetime, base_dimensions: Mapping[Dimension, str]
) -> list[MetricDatumTypeDef]:
    """The PutMetricData `MetricData` entries for `datums`, dimensions in contract order."""
    return [_metric_datum(d, at, base_dimensions) for d in datums]


def _metric_datum(
    datum: Datum, at: datetime, base_dimensions: Mapping[Dimension, str]
) -> MetricDatumTypeDef:
    values = {**base_dimensions}
    if datum.spec.extra_dimension is not None and datum.extra_value is not None:
        values[datum.spec.extra_dimension] = datum.extra_value
    return {
        "MetricName": datum.spec.name,
        "Dimensions": [{"Name": str(d), "Value": values[d]} for d in datum.spec.dimensions],
        "Timestamp": datum.at or at,
        "Value": float(datum.value),
        "Unit": datum.spec.unit.value,
    }


def encoded_size(entry: Mapping[str, Any], index: int = 1000) -> int:
    """Bytes `entry` takes in the query protocol, the most verbose one botocore may use."""
    return sum(len(name) + len(quote(value, safe="")) + 2 for name, value in _flatten(entry, index))


def _flatten(entry: Mapping[str, Any], index: int) -> Iterator[tuple[str, str]]:
    prefix = f"MetricData.member.{index}."
    for name, value in entry.items():
        if isinstance(value, list):
            for i, item in enumerate(value, start=1):
                for key, sub in item.items():
                    yield f"{prefix}{name}.member.{i}.{key}", str(sub)
        else:
            yield prefix + name, value.isoformat() if isinstance(value, datetime) else str(value)


def batches(entries: Sequence[MetricDatumTypeDef]) -> list[list[MetricDatumTypeDef]]:
    """Split entries into requests within the metric-count and payload-size limits."""
    result: list[list[MetricDatumTypeDef]] = []
    current: list[MetricDatumTypeDef] = []
    size = 0
    for entry in entries:
        entry_size = encoded_size(entry)
        if current and (
            len(current) >= MAX_METRICS_PER_CALL or size + entry_size > MAX_PAYLOAD_BYTES
        ):
            result.append(current)
            current, size = [], 0
        current.append(entry)
        size += entry_size
    if current:
        result.append(current)
    return result


def is_retryable(exc: Exception) -> bool:
    """Throttling, a 5xx answer or a network failure: worth another try after a pause."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        return code in THROTTLING_CODES or status >= 500
    return isinstance(exc, ConnectionError | HTTPClientError)


def backoff_delay(attempt: int, rand: float) -> float:
    """Full-jitter exponential backoff before retry number `attempt` (1-based)."""
    ceiling: float = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** (attempt - 1))
    return ceiling * rand


@dataclass
class CloudWatchPublisher:
    """Publishes to CloudWatch under the contract's namespace and base dimensions."""

    client: CloudWatchClient
    queue_name: str
    environment: str
    sleep: Sleep = time.sleep
    calls: int = field(default=0, init=False)  # PutMetricData requests sent, retries included

    def publish(self, datums: Sequence[Datum], at: datetime) -> None:
        """Send every datum; raises the last error if a batch still fails after retries."""
        entries = metric_data(datums, at, self._base_dimensions())
        for batch in batches(entries):
            self._put_with_retry(batch)

    def _base_dimensions(self) -> dict[Dimension, str]:
        return {Dimension.QUEUE: self.queue_name, Dimension.ENVIRONMENT: self.environment}

    def _put_with_retry(self, batch: list[MetricDatumTypeDef]) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                self.calls += 1
                self.client.put_metric_data(Namespace=NAMESPACE, MetricData=batch)
            except (ClientError, ConnectionError, HTTPClientError) as exc:
                if attempt == MAX_ATTEMPTS or not is_retryable(exc):
                    raise
                delay = backoff_delay(attempt, random.random())  # noqa: S311 - jitter only
                log.warning(
                    "PutMetricData attempt %d failed (%s); retrying in %.2fs", attempt, exc, delay
                )
                self.sleep(delay)
            else:
                return


@dataclass
class PrintPublisher:
    """`--dry-run`: prints the PutMetricData requests it would send, one JSON line each."""

    queue_name: str
    environment: str
    stream: IO[str]

    def publish(self, datums: Sequence[Datum], at: datetime) -> None:
        """Print each request as {"Namespace", "MetricData"} JSON."""
        base = {Dimension.QUEUE: self.queue_name, Dimension.ENVIRONMENT: self.environment}
        for batch in batches(metric_data(datums, at, base)):
            request = {"Namespace": NAMESPACE, "MetricData": batch}
            self.stream.write(json.dumps(request, default=_iso) + "\n")
        self.stream.flush()


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
