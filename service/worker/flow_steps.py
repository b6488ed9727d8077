"""Flows from taskiq code: `FlowStep(task, data=..., children=[...], **labels)` is what
`task.kicker().with_labels(**labels).kiq(data=data)` would enqueue, as one job of a flow.

`await broker.enqueue_flow(step)` sends the whole tree (docs/queue.md "Flows"); the parent's
code reads its children's results with `current_job.get().children_results()` (or the
`JobContext` a job type receives).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from taskiq import AsyncTaskiqDecoratedTask

from service.jobs.registry import JobRegistry
from service.queue.errors import InvalidRequestError, UnknownJobTypeError
from service.queue.flows import field_path
from service.queue.models import FlowNode, OnChildFailure
from service.queue.options import JobOptions
from service.queue.queue import QueueConfig


@dataclass
class FlowStep:
    """One job of a flow: a task (the `@broker.task` object of a job type, or its name), its
    `data`, kiq() labels (`priority`, `attempts`, `delay`, `timeout`, `backoff`, ...), what a
    failed child does to it, and the steps that must end before it runs."""

    task: AsyncTaskiqDecoratedTask[Any, Any] | str
    data: dict[str, Any] = field(default_factory=dict)
    children: list[FlowStep] = field(default_factory=list)
    on_child_failure: OnChildFailure = "fail"
    labels: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        task: AsyncTaskiqDecoratedTask[Any, Any] | str,
        data: dict[str, Any] | None = None,
        *,
        children: list[FlowStep] | None = None,
        on_child_failure: OnChildFailure = "fail",
        **labels: Any,
    ) -> FlowStep:
        """A step with its kiq() labels given by keyword, as `with_labels(**labels)` takes them."""
        return cls(task, data or {}, children or [], on_child_failure, labels)


def flow_node(
    step: FlowStep,
    registry: JobRegistry,
    config: QueueConfig,
    retry_labels: Callable[[dict[str, Any]], dict[str, Any]],
) -> FlowNode:
    """The queue's FlowNode for a tree of steps: each job built as `kiq()` builds a job of its
    type (the task's own labels under the step's). InvalidRequestError naming the step
    (`children[0].task`) whose task is not a job type; InvalidJobError for bad data.
    `retry_labels` reads taskiq's retry labels as attempts (the broker's taskiq_retry_labels).
    """
    built: dict[int, FlowNode] = {}
    order: list[tuple[FlowStep, str]] = []
    stack: list[tuple[FlowStep, str]] = [(step, "")]
    while stack:
        current, path = stack.pop()
        order.append((current, path))
        stack += [(c, field_path(path, f"children[{i}]")) for i, c in enumerate(current.children)]
    for current, path in reversed(order):
        name = current.task if isinstance(current.task, str) else current.task.task_name
        own = {} if isinstance(current.task, str) else current.task.labels
        try:
            job_type = registry.get(name)
        except UnknownJobTypeError as exc:
            where = field_path(path, "task")
            raise InvalidRequestError(
                f"{where}: {exc.message}",
                {"errors": [{"field": where, "message": exc.message}]},
            ) from None
        options = JobOptions.from_labels(retry_labels({**own, **current.labels}))
        built[id(current)] = FlowNode(
            spec=job_type.build_spec(current.data, config, options),
            on_child_failure=current.on_child_failure,
            children=[built[id(child)] for child in current.children],
        )
    return built[id(step)]
