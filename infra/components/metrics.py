"""CloudWatch metric references built from the service's metric contract.

Every metric the dashboard, alarms and scaling policies read comes through here, so they can only
name metrics the metrics task publishes, with the dimensions it publishes them with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi_aws as aws

from service.metrics.contract import NAMESPACE, Dimension, MetricSpec

# The metrics task's publishing period (METRICS_PERIOD_SECONDS) and the period of every alarm and
# widget on its metrics. Fixed, not configurable: Application Auto Scaling's target-tracking
# alarms evaluate one-minute periods, so a longer period would leave every other minute empty and
# INSUFFICIENT_DATA (and the alarms that treat missing data as breaching would page).
PUBLISH_PERIOD_SECONDS = 60


@dataclass(frozen=True)
class QueueMetrics:
    """The dimension values one deployment publishes under."""

    queue: str
    environment: str

    @property
    def period_seconds(self) -> int:
        """How often the metrics task publishes, and the period alarms read them at."""
        return PUBLISH_PERIOD_SECONDS

    @property
    def namespace(self) -> str:
        """The contract's CloudWatch namespace."""
        return NAMESPACE

    def dimensions(self, spec: MetricSpec, extra_value: str | None = None) -> dict[str, str]:
        """The dimension map of `spec`, exactly as the metrics task publishes it."""
        dims = {Dimension.QUEUE.value: self.queue, Dimension.ENVIRONMENT.value: self.environment}
        if (spec.extra_dimension is None) != (extra_value is None):
            raise ValueError(f"{spec.name} needs exactly its dimensions {spec.dimensions}")
        if spec.extra_dimension is not None and extra_value is not None:
            dims[spec.extra_dimension.value] = extra_value
        return dims

    def alarm_metric(self, spec: MetricSpec, statistic: str) -> dict[str, Any]:
        """A single-metric alarm's metric arguments: `spec` at the publishing period."""
        return {
            "namespace": NAMESPACE,
            "metric_name": spec.name,
            "dimensions": self.dimensions(spec),
            "statistic": statistic,
            "period": PUBLISH_PERIOD_SECONDS,
        }

    def widget_metric(
        self, spec: MetricSpec, extra_value: str | None = None, **options: str
    ) -> list[object]:
        """A dashboard widget `metrics` row: namespace, name, then dimension name/value pairs."""
        row: list[object] = [NAMESPACE, spec.name]
        for name, value in self.dimensions(spec, extra_value).items():
            row += [name, value]
        if options:
            row.append(dict(options))
        return row

    def alarm_query(
        self,
        query_id: str,
        spec: MetricSpec,
        stat: str = "Maximum",
        extra_value: str | None = None,
        period: int = PUBLISH_PERIOD_SECONDS,
    ) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
        """A metric-math alarm input (not returned) reading one contract metric.

        `period` must be a multiple of the publishing period, or some windows would be empty.
        """
        if period % PUBLISH_PERIOD_SECONDS:
            raise ValueError(f"period {period} is not a multiple of {PUBLISH_PERIOD_SECONDS} s")
        return aws.cloudwatch.MetricAlarmMetricQueryArgs(
            id=query_id,
            return_data=False,
            metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                namespace=NAMESPACE,
                metric_name=spec.name,
                dimensions=self.dimensions(spec, extra_value),
                period=period,
                stat=stat,
            ),
        )


def expression_query(
    query_id: str, expression: str, label: str
) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
    """The metric-math alarm input an alarm watches: `expression` over the other queries."""
    return aws.cloudwatch.MetricAlarmMetricQueryArgs(
        id=query_id, expression=expression, label=label, return_data=True
    )
