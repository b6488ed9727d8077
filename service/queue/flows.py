"""Flows: a tree of jobs posted whole, where a parent runs once all its children have ended.

The shape of a flow is checked here (depth, size, options a flow job may not take) before the
`enqueue-flow` script writes it all in one step; docs/queue.md "Flows" has the Redis model and
the guarantees. A path names a node the way a client wrote it: `children[3].children[0]`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from service.queue.errors import InvalidRequestError
from service.queue.models import FlowJob, FlowNode, JobSpec
from service.queue.states import JobState

# Levels of jobs, the root counting as the first. Each level is a settle step of the script
# that ends the deepest child (a parent failing fails its own parent), so this bounds one
# script's recursion.
MAX_FLOW_DEPTH = 10
# Jobs below the root in one flow: one script call creates them all (about 15 µs a job, so
# 10,000 hold Redis for some 150 ms), and one cancel of the root walks them all.
MAX_FLOW_CHILDREN = 10_000


@dataclass(frozen=True)
class PlacedNode:
    """A node of a flow in the order the script creates them (parents first)."""

    node: FlowNode
    path: str
    job_id: str
    parent_id: str


def field_path(path: str, name: str) -> str:
    """`name` of the node at `path` (`type` of the root, `children[0].type` below it)."""
    return f"{path}.{name}" if path else name


def walk(root: FlowNode, new_id: Iterator[str]) -> list[PlacedNode]:
    """Every node, parents before their children, each with a fresh id; InvalidRequestError
    naming the first node past the depth or size limit, or an option a flow job may not set."""
    placed: list[PlacedNode] = []
    stack: list[tuple[FlowNode, str, int, str]] = [(root, "", 1, "")]
    while stack:
        node, path, depth, parent_id = stack.pop()
        if depth > MAX_FLOW_DEPTH:
            raise _refusal(path, f"the flow is deeper than {MAX_FLOW_DEPTH} levels (the limit)")
        if len(placed) > MAX_FLOW_CHILDREN:
            raise _refusal(
                path, f"the flow has more than {MAX_FLOW_CHILDREN} jobs below its root (the limit)"
            )
        _check_options(node.spec, path)
        job_id = next(new_id)
        placed.append(PlacedNode(node, path, job_id, parent_id))
        # Reversed onto the stack, so children come out (and are listed) in the posted order.
        for index in reversed(range(len(node.children))):
            child_path = field_path(path, f"children[{index}]")
            stack.append((node.children[index], child_path, depth + 1, job_id))
    return placed


def _check_options(spec: JobSpec, path: str) -> None:
    # An idempotency or dedupe key may lead to a job that already exists, which cannot become
    # a child of a new parent (nor wait as one) after the fact.
    for name, value in (("idempotency_key", spec.idempotency_key), ("dedupe", spec.dedupe)):
        if value is not None:
            raise _refusal(
                field_path(path, f"options.{name}"),
                f"`{name}` is not supported on a flow job: a flow is created whole, as new jobs",
            )


def _refusal(field: str, message: str) -> InvalidRequestError:
    where = field or "the root"
    return InvalidRequestError(
        f"invalid flow at {where}: {message}",
        {"errors": [{"field": field or "(root)", "in": "body", "message": message}]},
    )


def script_args(placed: list[PlacedNode], messages: list[str], now: int) -> list[str | int]:
    """The `enqueue-flow` ARGV after its fixed arguments: 12 per job, in `placed` order."""
    args: list[str | int] = []
    for item, message in zip(placed, messages, strict=True):
        spec = item.node.spec
        args += [
            item.job_id, item.parent_id, len(item.node.children), item.node.on_child_failure,
            spec.type, int(spec.priority), message, now + int(spec.delay_seconds * 1000),
            spec.attempts, spec.keep_completed.encode(), spec.keep_failed.encode(),
            spec.group or "",
        ]  # fmt: skip
    return args


def tree_of(placed: list[PlacedNode]) -> FlowJob:
    """The enqueued flow's jobs as a tree, in the states the script gave them."""
    jobs: dict[str, FlowJob] = {}
    for item in placed:
        spec = item.node.spec
        state = JobState.DELAYED if spec.delay_seconds > 0 else JobState.PENDING
        if item.node.children:
            state = JobState.WAITING_CHILDREN
        job = FlowJob(id=item.job_id, type=spec.type, state=state)
        jobs[item.job_id] = job
        if item.parent_id:
            jobs[item.parent_id].children.append(job)
    return jobs[placed[0].job_id]
