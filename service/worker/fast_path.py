"""The receiver's fast path: a job that needs nothing of taskiq's full callback runs without it.

taskiq's `Receiver.callback` was 43% of a busy worker's time in the profile of issue 16, most
of it for things no job of ours uses by default: a loop over middlewares that only ours fills,
an AckableMessage and an AckController per job, dependency resolution for functions that
declare no dependencies (taskiq resolves even an empty graph), a TypeAdapter copy of `data`
that the job type validates against its payload model anyway, an anyio cancel scope for the
timeout, a validated TaskiqResult, and a result backend call that is a no-op for ours.

So a job takes the fast path only when none of that can matter:
- the broker's middlewares are only JobLifecycleMiddleware (a user's middleware: full path);
- its result backend is JobResultBackend (a configured one, RESULT_BACKEND_URL: full path);
- the receiver's and the message's ack time is taskiq's default (when the result is saved);
- the task is a coroutine function that declares no TaskiqDepends dependencies.
Everything else goes through taskiq's own callback, unchanged. What the fast path does is
what that callback would do in this case: the lifecycle middleware's pre_execute and
post_execute, the task's timeout label, the same log records, the same TaskiqResult fields.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

from taskiq.acks import AcknowledgeType
from taskiq.exceptions import NoResultError
from taskiq.message import TaskiqMessage
from taskiq.receiver import Receiver
from taskiq.receiver.params_parser import parse_params
from taskiq.result import TaskiqResult

from service.worker.taskiq_broker import JobLifecycleMiddleware, JobResultBackend

# taskiq's receiver logger: its records (a job's start, its failure) keep their name, so the
# filters and levels set for it (service.logs, PER_JOB_LOGGERS) apply to both paths alike.
taskiq_log = logging.getLogger("taskiq.receiver.receiver")

# Parameter annotations whose parsing cannot change a JSON object's value: taskiq's
# parse_params would only copy it (the job types' `data: dict[str, Any]`).
_NO_OP_HINTS: tuple[Any, ...] = (Any, dict[str, Any], dict)

Target = Callable[..., Any]


class FastPath:
    """Decides, per job, whether it may skip taskiq's callback, and runs it if so."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.broker = receiver.broker
        # Per task function: whether it may take the fast path, and whether its parameters
        # still need taskiq's parsing (annotations other than dict/Any).
        self._decided: dict[Target, tuple[bool, bool]] = {}

    def broker_allows(self) -> bool:
        """Whether nothing configured on the broker or receiver needs taskiq's callback."""
        broker = self.broker
        return (
            all(type(m) is JobLifecycleMiddleware for m in broker.middlewares)
            and type(broker.result_backend) is JobResultBackend
            and self.receiver.ack_time == AcknowledgeType.WHEN_SAVED
        )

    def plan(self, raw: str) -> tuple[TaskiqMessage, Target] | None:
        """The parsed message and the function to run, or None: take taskiq's callback."""
        if not self.broker_allows():
            return None
        try:
            message = self.broker.formatter.loads(message=raw.encode())  # as taskiq does
            message.parse_labels()
        except Exception:  # taskiq's callback logs it and acks
            return None
        if "ack_type" in message.labels:
            return None
        task = self.broker.find_task(message.task_name)
        if task is None:  # taskiq's callback warns, and the ack retries it later
            return None
        target = task.original_func
        allowed, parse = self._decide(message.task_name, target)
        if not allowed:
            return None
        if parse or not all(isinstance(v, dict) for v in message.kwargs.values()):
            self._parse_params(message)
        return message, target

    def _decide(self, name: str, target: Target) -> tuple[bool, bool]:
        decided = self._decided.get(target)
        if decided is None:
            receiver = self.receiver
            if name not in receiver.known_tasks:
                receiver._prepare_task(name, target)  # as taskiq's run_task does
            graph = receiver.dependency_graphs.get(name)
            hints = receiver.task_hints.get(name) or {}
            allowed = inspect.iscoroutinefunction(target) and (graph is None or graph.is_empty())
            parse = receiver.validate_params and any(
                hint not in _NO_OP_HINTS for param, hint in hints.items() if param != "return"
            )
            decided = self._decided[target] = (allowed, parse)
        return decided

    def _parse_params(self, message: TaskiqMessage) -> None:
        receiver = self.receiver
        if receiver.validate_params:
            name = message.task_name
            hints = receiver.task_hints.get(name) or {}
            parse_params(receiver.task_signatures.get(name), hints, message)

    async def run(self, target: Target, message: TaskiqMessage) -> TaskiqResult[Any]:
        """Run the task's code as taskiq's `run_task` would, and return its result."""
        taskiq_log.info("Executing task %s with ID: %s", message.task_name, message.task_id)
        returned: Any = None
        error: BaseException | None = None
        started = time.time()
        try:
            timeout = message.labels.get("timeout")
            if timeout is None:
                returned = await target(*message.args, **message.kwargs)
                if inspect.isawaitable(returned):
                    returned = await returned
            else:
                async with asyncio.timeout(float(timeout)):
                    returned = await target(*message.args, **message.kwargs)
                    if inspect.isawaitable(returned):
                        returned = await returned
        except NoResultError as exc:
            error = exc
            taskiq_log.warning(
                "Task %s with id %s skipped setting result.", message.task_name, message.task_id
            )
        except BaseException as exc:  # as taskiq: a cancelled job ends with its CancelledError
            error = exc
            taskiq_log.exception("Exception found while executing function.")
        # Built without validation: these are the fields taskiq sets, already of their types.
        return TaskiqResult.model_construct(
            is_err=error is not None,
            log=None,
            return_value=returned,
            execution_time=round(time.time() - started, 2),
            error=error,
            labels=message.labels,
        )
