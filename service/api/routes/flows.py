"""Flows: a tree of jobs posted whole; parents run after their children (docs/queue.md
"Flows"). The handler checks the tree and builds each job as an enqueue would, then one queue
call writes it all."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from service.api.deps import Authenticated, QueueDep
from service.api.errors import responses
from service.api.routes.jobs import require_unicode
from service.api.routing import TemplateRoute
from service.api.schemas import FlowEnqueuedPublic, FlowJobPublic, FlowNodeIn
from service.jobs.registry import REGISTRY
from service.queue.errors import InvalidRequestError, JobQueueError, UnknownJobTypeError
from service.queue.flows import MAX_FLOW_CHILDREN, MAX_FLOW_DEPTH, field_path
from service.queue.models import FlowNode, JobSpec
from service.queue.queue import JobQueue

router = APIRouter(tags=["flows"], dependencies=[Authenticated], route_class=TemplateRoute)

# Errors listed in one 422 at most: a 10,000-job flow of one wrong type stays a short answer.
MAX_LISTED_ERRORS = 50


@router.post("/flows", status_code=status.HTTP_201_CREATED, responses=responses(413))
async def enqueue_flow(body: FlowNodeIn, queue: QueueDep) -> FlowEnqueuedPublic:
    """Enqueue a flow: a job and the jobs that must end before it (`children`, recursively),
    all or nothing. Children run first, in parallel; a parent waits in `waiting-children`
    until every child has ended, then becomes pending. At most 10 levels and 10,000 jobs below
    the root; an unknown type or bad data anywhere is a 422 naming its place
    (`children[3].children[0].type`)."""
    flow = await queue.enqueue_flow(build_flow(queue, body))
    return FlowEnqueuedPublic(root=FlowJobPublic.from_flow_job(flow.root), ids=flow.ids)


def build_flow(queue: JobQueue, root: FlowNodeIn) -> FlowNode:
    """The queue's FlowNode for a posted tree: every job checked as an enqueue checks it;
    InvalidRequestError naming every bad place (up to MAX_LISTED_ERRORS of them)."""
    _check_shape(root)
    errors: list[dict[str, Any]] = []
    specs: dict[int, JobSpec] = {}
    for node, path in _nodes(root):
        try:
            specs[id(node)] = _spec(queue, node, path)
        except JobQueueError as exc:
            errors += exc.details.get("errors") or [{"field": path, "message": exc.message}]
    if errors:
        listed = errors[:MAX_LISTED_ERRORS]
        raise InvalidRequestError(
            f"{len(errors)} invalid field(s) in the flow; nothing was enqueued: "
            + "; ".join(f"{e['field']}: {e['message']}" for e in listed[:5]),
            {"errors": listed, "invalid_fields": len(errors)},
        )
    return _assemble(root, specs)


def _check_shape(root: FlowNodeIn) -> None:
    # Depth and size before any job is built, so a refused tree costs no validation.
    count = 0
    stack: list[tuple[FlowNodeIn, str, int]] = [(root, "", 1)]
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_FLOW_DEPTH:
            raise _shape_error(path, f"the flow is deeper than {MAX_FLOW_DEPTH} levels (the limit)")
        count += len(node.children)
        if count > MAX_FLOW_CHILDREN:
            first_over = len(node.children) - (count - MAX_FLOW_CHILDREN)
            raise _shape_error(
                field_path(path, f"children[{first_over}]"),
                f"the flow has more than {MAX_FLOW_CHILDREN} jobs below its root (the limit)",
            )
        stack += [(c, field_path(path, f"children[{i}]"), depth + 1)
                  for i, c in enumerate(node.children)]  # fmt: skip


def _shape_error(path: str, message: str) -> InvalidRequestError:
    field = path or "(root)"
    return InvalidRequestError(
        f"invalid flow at {field}: {message}",
        {"errors": [{"field": field, "in": "body", "message": message}]},
    )


def _nodes(root: FlowNodeIn) -> list[tuple[FlowNodeIn, str]]:
    found: list[tuple[FlowNodeIn, str]] = []
    stack: list[tuple[FlowNodeIn, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        found.append((node, path))
        stack += [(c, field_path(path, f"children[{i}]")) for i, c in enumerate(node.children)]
    return found


def _spec(queue: JobQueue, node: FlowNodeIn, path: str) -> JobSpec:
    for name in ("idempotency_key", "dedupe"):
        if getattr(node.options, name) is not None:
            message = (
                f"`{name}` is not supported on a flow job: a flow is created whole, as new jobs"
            )
            raise InvalidRequestError(
                message, {"errors": [{"field": field_path(path, f"options.{name}"),
                                      "in": "body", "message": message}]},
            )  # fmt: skip
    try:
        job_type = REGISTRY.get(node.type)
    except UnknownJobTypeError as exc:
        # A bad field of the body here (422), not a missing resource as in a path (404).
        field = {"field": field_path(path, "type"), "in": "body", "message": exc.message}
        raise InvalidRequestError(exc.message, {"errors": [field]}) from None
    try:
        require_unicode(node.data)
        return job_type.build_spec(node.data, queue.config, node.options.to_options())
    except JobQueueError as exc:
        found = exc.details.get("errors") or [{"field": "data", "message": exc.message}]
        raise InvalidRequestError(
            exc.message,
            {"errors": [{**err, "field": field_path(path, err["field"])} for err in found]},
        ) from None


def _assemble(root: FlowNodeIn, specs: dict[int, JobSpec]) -> FlowNode:
    # Bottom-up without recursion: every node's children are built before the node itself.
    order = [node for node, _ in _nodes(root)]
    built: dict[int, FlowNode] = {}
    for node in reversed(order):
        built[id(node)] = FlowNode(
            spec=specs[id(node)],
            on_child_failure=node.on_child_failure,
            children=[built[id(child)] for child in node.children],
        )
    return built[id(root)]
