"""`GET /metrics`: the same numbers as CloudWatch, in the Prometheus text format.

Metric names are derived from the contract (`QueueDepth` -> `jobqueue_queue_depth`), so no name
is spelled twice. All are gauges: the snapshot holds levels and per-period counts, not
monotonic counters, and a fresh registry per request means nothing lingers between scrapes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from service.jobs.registry import REGISTRY
from service.metrics.collector import QueueSnapshot
from service.metrics.contract import MetricSpec, Unit
from service.metrics.datums import Datum, snapshot_datums
from service.queue.models import MemoryUsage

PREFIX = "jobqueue_"
_WORD_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def prometheus_name(spec: MetricSpec) -> str:
    """The contract name in Prometheus style, with its unit as a suffix."""
    name = PREFIX + _WORD_BOUNDARY.sub("_", spec.name).lower()
    if spec.unit is Unit.MILLISECONDS and not name.endswith("_milliseconds"):
        name += "_milliseconds"
    return name


def label_name(spec: MetricSpec) -> str | None:
    """The label carrying the metric's extra dimension (`priority`, `job_type`)."""
    if spec.extra_dimension is None:
        return None
    return _WORD_BOUNDARY.sub("_", spec.extra_dimension.value).lower()


class _SnapshotCollector:
    def __init__(self, datums: Sequence[Datum], queue_name: str) -> None:
        self._datums = datums
        self._queue = queue_name

    def collect(self) -> Iterable[Metric]:
        families: dict[str, GaugeMetricFamily] = {}
        for datum in self._datums:
            spec = datum.spec
            extra = label_name(spec)
            labels = ["queue"] if extra is None else ["queue", extra]
            family = families.get(spec.name)
            if family is None:
                family = GaugeMetricFamily(prometheus_name(spec), spec.description, labels=labels)
                families[spec.name] = family
            values = (
                [self._queue] if datum.extra_value is None else [self._queue, datum.extra_value]
            )
            family.add_metric(values, float(datum.value))
        return list(families.values())


class _MemoryCollector:
    """Redis memory and the enqueue limit: not in the CloudWatch contract (ElastiCache
    publishes its own memory metrics there), but a Prometheus scrape has no other source."""

    def __init__(self, memory: MemoryUsage, queue_name: str) -> None:
        self._memory = memory
        self._queue = queue_name

    def collect(self) -> Iterable[Metric]:
        memory = self._memory
        gauges = [
            ("redis_memory_used_bytes", "Memory Redis uses (INFO used_memory).", memory.used_bytes),
            ("redis_memory_max_bytes", "Redis maxmemory; 0 = none set.", memory.max_bytes),
            (
                "enqueue_memory_limit_bytes",
                "Used memory above which enqueues are refused; 0 = never.",
                memory.enqueue_limit_bytes,
            ),
            (
                "enqueues_refused",
                "1 while enqueues are refused because Redis memory is above the limit.",
                int(memory.refusing_enqueues),
            ),
        ]
        families = []
        for name, description, value in gauges:
            family = GaugeMetricFamily(PREFIX + name, description, labels=["queue"])
            family.add_metric([self._queue], float(value))
            families.append(family)
        return families


def render_prometheus(
    snapshot: QueueSnapshot,
    queue_name: str,
    job_types: Iterable[str] | None = None,
    memory: MemoryUsage | None = None,
) -> tuple[bytes, str]:
    """The exposition body and its content type for one snapshot (and Redis memory, if read).

    `job_types` None means the types registered in this process (the API loads them all), so
    a scrape shows the same per-type series the metrics task publishes to CloudWatch.
    """
    types = REGISTRY.names() if job_types is None else job_types
    registry = CollectorRegistry()
    registry.register(_SnapshotCollector(snapshot_datums(snapshot, types), queue_name))
    if memory is not None:
        registry.register(_MemoryCollector(memory, queue_name))
    return generate_latest(registry), CONTENT_TYPE_LATEST
