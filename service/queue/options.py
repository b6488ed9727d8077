"""Job options: what a caller may choose for one job, each limit stated once.

Every way in goes through this module. The HTTP API's request models (service/api/schemas.py)
build their fields from the types below and turn a request into `JobOptions`; kiq() labels
become `JobOptions.from_labels` (service/worker/taskiq_broker.py); the CLI sends the HTTP
API's body; the dashboard's form reads `option_limits()` from `GET /jobs/types`; job-type
defaults (service/jobs/registry.py) and the resolved `JobSpec` (models.py) use the same types.
A new option (a schedule, a flow parent, a dedupe window, a group) is a field of `JobOptions`
here, then a field in each of those paths; tests/api/test_job_options_paths.py checks that
every path stores the same job.
"""

from __future__ import annotations

import json
import random
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from service.queue.states import Priority

# A job may wait up to a year before its first run, and one run may take up to a week.
MAX_DELAY_SECONDS = 365 * 86_400
MAX_TIMEOUT_SECONDS = 7 * 86_400
# Runs allowed, counting the first: more than 100 is a loop, not a retry policy.
MAX_ATTEMPTS = 100
# A retry waits at most a day per step and never more than a week in all.
MAX_BACKOFF_DELAY_SECONDS = 86_400
MAX_BACKOFF_CAP_SECONDS = 7 * 86_400
# Unless a backoff says otherwise, no retry waits longer than this (or than its own delay).
DEFAULT_BACKOFF_CAP_SECONDS = 300.0
MAX_IDEMPOTENCY_KEY_LENGTH = 256
# A dedupe key is a caller's name for "the same work", like an idempotency key; its window is
# at most a week, the longest a job may run (a longer window would outlive any job it guards).
MAX_DEDUPE_KEY_LENGTH = 256
MAX_DEDUPE_TTL_SECONDS = 7 * 86_400
# A group (a tenant) names a fair share of the queue (docs/queue.md "Groups"); its name is part
# of Redis keys and URL paths, so it is short and printable.
MAX_GROUP_BYTES = 128
# Retention: finished jobs kept per state, and for how long.
MAX_RETENTION_COUNT = 10_000_000
MAX_RETENTION_AGE_SECONDS = 365 * 86_400

DelaySeconds = Annotated[float, Field(ge=0, le=MAX_DELAY_SECONDS)]
Attempts = Annotated[int, Field(ge=1, le=MAX_ATTEMPTS)]
TimeoutSeconds = Annotated[float, Field(gt=0, le=MAX_TIMEOUT_SECONDS)]
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=MAX_IDEMPOTENCY_KEY_LENGTH)]
RetentionCount = Annotated[int, Field(ge=0, le=MAX_RETENTION_COUNT)]
RetentionAge = Annotated[int, Field(ge=0, le=MAX_RETENTION_AGE_SECONDS)]


class Backoff(BaseModel):
    """How long a failed attempt waits before the next one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["exponential", "fixed"] = "exponential"
    delay_seconds: float = Field(default=1.0, ge=0, le=MAX_BACKOFF_DELAY_SECONDS)
    max_delay_seconds: float = Field(
        default=DEFAULT_BACKOFF_CAP_SECONDS, ge=0, le=MAX_BACKOFF_CAP_SECONDS
    )
    # Fraction of the delay that is randomized away, so jobs failing together (a downstream
    # outage) do not all retry in the same instant. 0 = exact delays.
    jitter: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Fraction of the delay randomized away; `true` = 0.5, `false` = 0.",
    )

    @field_validator("jitter", mode="before")
    @classmethod
    def _jitter_from_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):  # `"jitter": true` reads naturally in JSON
            return 0.5 if value else 0.0
        return value

    @model_validator(mode="after")
    def _cap_not_below_delay(self) -> Backoff:
        # A cap below the delay would silently shorten every retry's wait. Unset, the cap
        # follows a delay above its default instead of cutting it (a 600 s backoff waits 600 s
        # whichever path it came by).
        if "max_delay_seconds" not in self.model_fields_set:
            object.__setattr__(  # frozen model: its own validator completes it
                self, "max_delay_seconds", max(self.max_delay_seconds, self.delay_seconds)
            )
        elif self.max_delay_seconds < self.delay_seconds:
            raise ValueError(
                f"max_delay_seconds ({self.max_delay_seconds:g}) is below delay_seconds "
                f"({self.delay_seconds:g}): raise the cap or lower the delay"
            )
        return self

    def delay_for(self, attempt: int, rand: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        base = self.delay_seconds
        if self.type == "exponential":
            base = self.delay_seconds * 2 ** max(attempt - 1, 0)
        base = min(base, self.max_delay_seconds)
        fraction = random.random() if rand is None else rand  # noqa: S311 - not cryptographic
        return base * (1 - self.jitter * fraction)


class Retention(BaseModel):
    """How many finished jobs to keep and for how long (Bull's removeOnComplete/removeOnFail).

    `count` 0 removes the job as soon as it finishes; None means no limit on that axis.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: RetentionCount | None = None
    age_seconds: RetentionAge | None = None

    @classmethod
    def parse(cls, value: RetentionForm | None, default: Retention) -> Retention:
        """Read Bull's forms: true = remove at once, false = keep all, N = keep the last N,
        {"age": seconds, "count": n} = both limits; None = the default."""
        if value is None:
            return default
        if isinstance(value, Retention):
            return value
        if isinstance(value, bool):
            return cls(count=0) if value else cls()
        if isinstance(value, int):
            return cls(count=value)
        return cls(count=value.get("count"), age_seconds=value.get("age", value.get("age_seconds")))

    def encode(self) -> str:
        """The "count,age" form the Lua scripts read (-1 = unlimited)."""
        count = -1 if self.count is None else self.count
        age = -1 if self.age_seconds is None else self.age_seconds
        return f"{count},{age}"


# Bull's forms of a retention option: true = remove at once, false = keep all, N = keep the
# last N, {"count": n, "age": seconds} = both limits.
RetentionForm = bool | int | dict[str, Any] | Retention


def check_group_name(value: str) -> str:
    """A group name as the queue stores it: 1 to 128 bytes of UTF-8, no control characters
    (they would corrupt logs, terminals and the `kind|group` fields of `QueueKeys.group_state`
    readers split on the first `|`)."""
    if not value:
        raise ValueError("group must not be empty: give a tenant or group name")
    size = len(value.encode())
    if size > MAX_GROUP_BYTES:
        raise ValueError(
            f"group is {size} bytes of UTF-8; at most {MAX_GROUP_BYTES} are allowed: "
            "use a shorter name (an id rather than a description)"
        )
    for at, char in enumerate(value):
        if unicodedata.category(char) == "Cc":
            raise ValueError(
                f"group contains the control character U+{ord(char):04X} at position {at}: "
                "use printable characters only"
            )
    return value


GroupName = Annotated[str, AfterValidator(check_group_name)]


DedupeMode = Literal["throttle", "debounce", "until_done"]


class Dedupe(BaseModel):
    """Deduplication by a caller's key (docs/queue.md "Deduplication").

    `throttle`: within the ttl a second enqueue returns the first job. `debounce`: it replaces
    the pending or delayed job's data and restarts its delay (the last call wins); once the job
    has started, it makes a new one. `until_done`: it returns the first job while that job is
    pending, delayed or processing; the ttl is an optional safety bound.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1, max_length=MAX_DEDUPE_KEY_LENGTH)
    mode: DedupeMode
    ttl_seconds: float | None = Field(
        default=None, gt=0, le=MAX_DEDUPE_TTL_SECONDS, validate_default=True
    )

    @field_validator("ttl_seconds", mode="after")
    @classmethod
    def _ttl_where_needed(cls, value: float | None, info: ValidationInfo) -> float | None:
        # throttle and debounce are windows: without a length they would never let a job in
        # again (throttle) or never end (debounce).
        mode = info.data.get("mode")
        if value is None and mode in ("throttle", "debounce"):
            raise ValueError(f"ttl_seconds is required for mode {mode}")
        return value

    def encode(self) -> str:
        """The "<mode>:<ttl ms>:<key>" form the enqueue script reads (ttl 0 = none): one
        argument, so a job without dedupe sends one empty one."""
        ttl_ms = 0 if self.ttl_seconds is None else max(1, int(self.ttl_seconds * 1000))
        return f"{self.mode}:{ttl_ms}:{self.key}"

    @classmethod
    def from_labels(cls, labels: dict[str, Any]) -> Dedupe | None:
        """A kiq() label `dedupe` (a JSON object or a dict), or `dedupe_key`, `dedupe_mode`
        and `dedupe_ttl` (seconds); None when there is none."""
        given = labels.get("dedupe")
        if isinstance(given, str | bytes):
            given = json.loads(given)
        if given is not None:
            return cls.model_validate(given)
        if labels.get("dedupe_key") is None:
            return None
        ttl = labels.get("dedupe_ttl")
        return cls(
            key=str(labels["dedupe_key"]),
            mode=labels.get("dedupe_mode", "throttle"),
            ttl_seconds=None if ttl is None else float(ttl),
        )


class JobOptions(BaseModel):
    """One job's own choices; each left unset takes the job type's default, then the queue's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    priority: Priority | None = None
    delay_seconds: DelaySeconds = 0.0
    attempts: Attempts | None = None
    backoff: Backoff | None = None
    timeout_seconds: TimeoutSeconds | None = None
    idempotency_key: IdempotencyKey | None = None
    remove_on_complete: RetentionForm | None = None
    remove_on_fail: RetentionForm | None = None
    dedupe: Dedupe | None = None
    group: GroupName | None = None

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_by_name(cls, value: Any) -> Any:
        return None if value is None else Priority.parse(value)

    @classmethod
    def from_labels(cls, labels: dict[str, Any]) -> JobOptions:
        """The options a `kiq()` carries in its labels (`with_labels(priority="high", ...)`):
        `delay` and `timeout` in seconds, `backoff` as a JSON object or a dict, `dedupe` as
        `Dedupe.from_labels` reads it, `group` as a name."""
        given = {key: value for key, value in labels.items() if value is not None}
        backoff = given.get("backoff")
        return cls(
            priority=given.get("priority"),
            delay_seconds=float(given.get("delay", 0)),
            attempts=int(given["attempts"]) if "attempts" in given else None,
            backoff=json.loads(backoff) if isinstance(backoff, str | bytes) else backoff,
            timeout_seconds=float(given["timeout"]) if "timeout" in given else None,
            idempotency_key=given.get("idempotency_key"),
            dedupe=Dedupe.from_labels(given),
            group=None if "group" not in given else str(given["group"]),
        )


def option_limits() -> dict[str, dict[str, float]]:
    """The bounds of each numeric option, for forms that check before they send (the
    dashboard's); the API checks the same bounds again."""
    return {
        "delay_seconds": {"minimum": 0, "maximum": MAX_DELAY_SECONDS},
        "attempts": {"minimum": 1, "maximum": MAX_ATTEMPTS},
        "timeout_seconds": {"exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_SECONDS},
        "idempotency_key": {"minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH},
        "group": {"minLength": 1, "maxLength": MAX_GROUP_BYTES},
    }
