"""The one place configuration is read. Every value comes from the environment (or `.env`).

A bad value stops start-up with a message naming the variable: pydantic-settings reports the
field, and the field names are the environment variable names in lower case.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["local", "test", "dev", "staging", "prod"]

# ECS Fargate gives a stopping task at most 120 s (stopTimeout) before SIGKILL. The worker's
# grace must end comfortably before that, leaving time to hand unfinished jobs back.
FARGATE_MAX_STOP_TIMEOUT_SECONDS = 120
# How long after its grace a worker needs to hand unfinished jobs back and exit: the hard exit
# 3 s after the grace (service.worker.receiver) or taskiq's 10 s broker shutdown
# (service.worker.BROKER_SHUTDOWN_SECONDS), plus process exit. The infra's stopTimeout must
# leave this much after SHUTDOWN_GRACE_SECONDS (tests/infra/test_shutdown_margin.py).
HANDBACK_MARGIN_SECONDS = 15
# `jobqueue run` writes the connection settings of the running instance here (REDIS_URL, the
# queue, the API URL and key) and removes it when it stops. Read after `.env` and below the
# environment, so `from service.worker import broker` and the CLI find the local instance
# without exports; anything set in the environment wins.
RUN_ENV_FILE = Path(".jobqueue/run.env")


class Settings(BaseSettings):
    """Runtime configuration for the API, the workers, the metrics task and the CLI."""

    model_config = SettingsConfigDict(env_file=(".env", RUN_ENV_FILE), extra="ignore", frozen=True)

    environment: Environment = "local"

    # --- Redis / Valkey -----------------------------------------------------------------------
    # REDIS_URL wins when set; otherwise the URL is built from the parts below (the shape ECS
    # task definitions use, where the password arrives alone as an ECS secret).
    redis_url: str | None = None
    redis_host: str | None = None
    redis_port: int = Field(default=6379, ge=1, le=65535)
    redis_password: SecretStr | None = None
    redis_tls: bool = False
    # The server is a cluster (ElastiCache cluster mode): connect through its configuration
    # endpoint to whichever primary owns the queue's hash slot, and follow the slot when it moves.
    redis_cluster: bool = False
    # Where the locally embedded Valkey keeps its append-only file, so queued jobs survive a
    # restart of `jobqueue run`.
    data_dir: Path = Path(".jobqueue")

    # --- The queue ----------------------------------------------------------------------------
    queue_name: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    key_prefix: str = Field(default="jq", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    # A job's lease: a worker that stops renewing (killed, frozen, partitioned) loses the job
    # this long after its last renewal. Shorter means faster recovery; longer tolerates longer
    # event-loop stalls. 30 s matches BullMQ's default lockDuration.
    lease_seconds: float = Field(default=30.0, ge=1.0, le=3600.0)
    # How often a worker renews the leases of the jobs it holds. A third of the lease leaves two
    # missed renewals of slack before the sweeper would hand the job to someone else.
    lease_renew_seconds: float | None = Field(default=None, gt=0)
    # How often some worker (under a lock) returns expired leases, promotes due delayed jobs and
    # trims finished jobs past retention.
    sweep_interval_seconds: float = Field(default=5.0, gt=0, le=300.0)
    # An idle worker blocks on Redis at most this long before re-checking; bounded so a worker
    # notices shutdown and delayed work without busy polling.
    idle_block_seconds: float = Field(default=2.0, gt=0, le=30.0)

    # --- Workers ------------------------------------------------------------------------------
    worker_count: int = Field(default=1, ge=1, le=64)
    # 50, from a sweep across light and heavy job types (docs/benchmarks.md, "Default
    # WORKER_CONCURRENCY"): jobs that wait on I/O run 5x faster than at 10, CPU-bound ones are
    # unchanged, and no-op throughput is within noise of 200 while a worker holds a quarter.
    worker_concurrency: int = Field(default=50, ge=1, le=10_000)
    # Jobs a worker process may hold beyond those running, so it refills in batches (one round
    # trip for many jobs) instead of one dequeue per finished job. They are leased like running
    # jobs (renewed, handed back on shutdown). Unset = WORKER_CONCURRENCY; 0 = no prefetch,
    # which is fairest across workers for long jobs.
    worker_prefetch: int | None = Field(default=None, ge=0, le=10_000)
    # On SIGTERM running jobs get this long to finish before they are handed back to pending.
    shutdown_grace_seconds: float = Field(default=90.0, ge=0)
    # Heartbeats keep the worker registry current; a worker silent for the TTL drops out.
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    heartbeat_ttl_seconds: float = Field(default=20.0, gt=0)
    # A worker that could take jobs, has due jobs pending and has tried to take none for this
    # long is stalled: it warns, restarts its dispatch loop and says so in its heartbeat. A
    # healthy worker with room is always taking or in its idle wait (which counts as trying),
    # so this only has to outlast a busy loop; checked at each heartbeat, a stall heals within
    # this plus HEARTBEAT_SECONDS.
    worker_stall_seconds: float = Field(default=10.0, gt=0, le=3600.0)
    # Job code may hold the event loop (a CPU-bound loop, a blocking call) this long before the
    # worker's container health check fails and ECS replaces the task, running the job again.
    # Below it, leases are renewed from a thread of their own, so the job runs once. Five
    # minutes: longer than any built-in job holds it, short enough that wedged code is replaced.
    worker_loop_hold_limit_seconds: float = Field(default=300.0, gt=0, le=86_400.0)

    # Extra modules defining job types (comma-separated import paths), loaded by API and workers.
    job_modules: str = ""

    # --- Retention (Bull's removeOnComplete / removeOnFail defaults) ----------------------------
    # Bounded by default so Redis memory cannot grow without limit; a job may ask for less or more.
    keep_completed_count: int = Field(default=10_000, ge=0)
    keep_completed_seconds: int = Field(default=24 * 3600, ge=0)
    keep_failed_count: int = Field(default=50_000, ge=0)
    keep_failed_seconds: int = Field(default=7 * 24 * 3600, ge=0)
    # Log lines a job may append; older lines are dropped beyond this.
    max_log_lines: int = Field(default=200, ge=1, le=10_000)
    # Enqueues are refused (503 queue_full) once Redis uses more than this share of its
    # maxmemory. Under `noeviction` a full Redis refuses every write, heartbeats and finishing
    # jobs included; stopping new work at 90% keeps 10% for what is already accepted (results,
    # counters, heartbeats). 10% of the cache's smallest node is still far above one 1 MiB bulk
    # request. 1 = only Redis's own limit; no effect where maxmemory is unset.
    enqueue_max_memory_share: float = Field(default=0.9, gt=0, le=1)

    # --- taskiq-redis result backend (docs/migrating-from-taskiq-redis.md) ----------------------
    # "queue": results live on the job record only (the API, the dashboard, `wait_result()`).
    # "taskiq-redis" / "taskiq-redis-cluster": each job's final result is also written where
    # taskiq-redis's RedisAsyncResultBackend (or its cluster variant) keeps it, so code that
    # reads results through it keeps working while the job record is written as before.
    result_backend: Literal["queue", "taskiq-redis", "taskiq-redis-cluster"] = "queue"
    # The Redis those results go to; unset = REDIS_URL.
    result_backend_url: str | None = None
    # taskiq-redis's `result_ex_time`: seconds a result is kept; unset = for good, as
    # taskiq-redis keeps them by default.
    result_ex_time: int | None = Field(default=None, gt=0)
    # taskiq-redis's `prefix_str`: result keys are `<prefix>:<task id>`; unset = the bare id.
    result_key_prefix: str | None = None

    # --- Logs ---------------------------------------------------------------------------------
    # "json": one JSON object per line (time, level, logger, message, traceback), which
    # CloudWatch Logs Insights splits into fields; "text" for a terminal (service.logs).
    log_format: Literal["text", "json"] = "text"
    # uvicorn's line per HTTP request. Off by default: the ALB keeps access logs in the cloud,
    # and locally the dashboard's polling would bury every other line.
    access_log: bool = False

    # --- Redis unreachable at start-up -----------------------------------------------------------
    # `jobqueue worker` retries a Redis it cannot reach this many times, waiting twice as long
    # each time from 1 s up to 30 s (about 3 minutes in all: longer than a Valkey failover or a
    # container restart), then exits with its own code so a process manager sees why.
    redis_connect_attempts: int = Field(default=8, ge=1, le=1000)

    # --- AWS ---------------------------------------------------------------------------------
    aws_region: str = "us-east-1"

    # --- HTTP API ------------------------------------------------------------------------------
    # Comma-separated keys clients send as `X-API-Key` or `Authorization: Bearer`. The API refuses
    # to start without at least one (from here or API_KEYS_FILE): auth is never silently off.
    api_keys: SecretStr | None = None
    # A file with one key per line (blank lines and `#` comments ignored), e.g. a mounted secret.
    api_keys_file: Path | None = None
    # Request bodies above this are refused with 413 while being read. 1 MiB fits a bulk enqueue
    # of 1,000 small jobs; job payloads that need more belong in object storage, not Redis.
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    # The same for `POST /flows`, which takes up to 10,001 jobs in one body: 16 MiB leaves each
    # about 1.6 kB, where 1 MiB would leave 100 bytes.
    max_flow_body_bytes: int = Field(default=16 * 1_048_576, ge=1024, le=64 * 1_048_576)
    # Where `jobqueue run` and `jobqueue api` listen. Loopback by default: a developer's laptop
    # should not expose the queue; containers pass `--host 0.0.0.0`.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # How long an SSE stream (GET /jobs/{id}/events) stays open at most; clients reconnect.
    # Bounded so a job that never ends cannot pin a connection (and an ALB idle slot) forever.
    sse_max_seconds: float = Field(default=3600.0, gt=0)
    # Seconds between SSE keep-alive comments; below the ALB's 60 s idle timeout.
    sse_ping_seconds: float = Field(default=15.0, gt=0)

    @model_validator(mode="after")
    def _refuse_placeholder_api_keys(self) -> Settings:
        if self.environment in ("local", "test") or self.api_keys is None:
            return self
        keys = self.split_api_keys(self.api_keys.get_secret_value())
        if any(self.is_placeholder_key(key) for key in keys):
            raise ValueError(
                "API_KEYS holds a placeholder or a key shorter than 16 characters; generate one "
                "with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return self

    @staticmethod
    def split_api_keys(raw: str) -> list[str]:
        """The keys of a comma-separated API_KEYS value, blanks dropped."""
        return [key.strip() for key in raw.split(",") if key.strip()]

    @staticmethod
    def is_placeholder_key(key: str) -> bool:
        """Whether a key is an example value or too short to resist guessing."""
        placeholders = {"changeme", "change-me", "secret", "password", "test", "example", "apikey"}
        return len(key) < 16 or key.lower().replace("_", "-") in placeholders

    def api_key_values(self) -> list[str]:
        """Every configured API key: API_KEYS plus the lines of API_KEYS_FILE."""
        keys = self.split_api_keys(self.api_keys.get_secret_value()) if self.api_keys else []
        if self.api_keys_file is not None:
            lines = self.api_keys_file.read_text(encoding="utf-8").splitlines()
            keys += [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        return keys

    # --- Job types and artifacts ---------------------------------------------------------------
    # Job outputs (processed data, images, reports) go here unless ARTIFACT_BUCKET names an S3
    # bucket; reading an artifact never leaves this folder (see service.artifacts).
    artifact_dir: Path = Path(".jobqueue/artifacts")
    artifact_bucket: str | None = None
    # "file" writes .eml files to EMAIL_OUTBOX_DIR, so local runs never send real mail.
    email_backend: Literal["file", "smtp", "ses"] = "file"
    email_from: str = "jobqueue@localhost"
    email_outbox_dir: Path = Path(".jobqueue/outbox")
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    # Bounds each SMTP connect/command; well below the email type's 60 s job timeout so a hung
    # server surfaces as a retryable network error, not a timeout.
    smtp_timeout_seconds: float = Field(default=20.0, gt=0, le=300)

    # --- Metrics and health --------------------------------------------------------------------
    # Off locally (no AWS credentials there); the infra sets CLOUDWATCH_ENABLED=true on the
    # metrics task, whose role may call PutMetricData.
    cloudwatch_enabled: bool = False
    # Seconds between publishes, in whole minutes: completed/failed come from per-minute
    # counters, so each publish covers exactly the minutes that closed since the previous one and
    # CloudWatch's Sum over any window counts every job once. 60 s is CloudWatch's standard
    # resolution, the period every alarm and the target-tracking policy evaluate.
    metrics_period_seconds: float = Field(default=60, ge=60, le=3600, multiple_of=60)
    # Enqueue a `noop` job every period and publish its end-to-end latency: an alarm then fires
    # when jobs stop flowing even though every process still heartbeats.
    canary_enabled: bool = False
    # A same-AZ ElastiCache round trip takes about 1 ms; 100 ms means an overloaded server or
    # network trouble, and every enqueue and dequeue pays it. Above it the queue is degraded.
    health_max_redis_latency_ms: float = Field(default=100.0, gt=0)
    # Matches the dev stack's oldest-pending-age alarm (300 s): by then a job has waited five
    # times the default metrics period, so scaling has had its chance to catch up.
    health_oldest_pending_degraded_seconds: float = Field(default=300.0, gt=0)
    # Half an hour of waiting is an outage for any interactive use of the queue.
    health_oldest_pending_unhealthy_seconds: float = Field(default=1800.0, gt=0)
    # Failure rate = failed / (completed + failed) over the window below. 10% matches the dev
    # stack's failure-rate alarm; at 50% most work is failing and someone must look now.
    health_failure_rate_degraded: float = Field(default=0.10, ge=0, le=1)
    health_failure_rate_unhealthy: float = Field(default=0.50, ge=0, le=1)
    # Five minutes smooths out one bad batch yet still reacts within a few metric periods.
    health_failure_window_minutes: int = Field(default=5, ge=1, le=120)
    # With fewer finished jobs than this in the window the rate is noise (1 failure of 2 jobs
    # is 50%), so the check reports healthy with the numbers in its detail.
    health_failure_min_jobs: int = Field(default=20, ge=1)

    @field_validator("health_oldest_pending_unhealthy_seconds", "health_failure_rate_unhealthy")
    @classmethod
    def _unhealthy_above_degraded(cls, value: float, info: ValidationInfo) -> float:
        degraded_field = str(info.field_name).replace("unhealthy", "degraded")
        degraded = info.data.get(degraded_field)
        if degraded is not None and value < degraded:
            raise ValueError(f"must be at least {degraded_field.upper()} ({degraded})")
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.renew_interval >= self.lease_seconds:
            raise ValueError("LEASE_RENEW_SECONDS must be shorter than LEASE_SECONDS")
        if self.heartbeat_ttl_seconds <= self.heartbeat_seconds:
            raise ValueError("HEARTBEAT_TTL_SECONDS must be longer than HEARTBEAT_SECONDS")
        longest_grace = FARGATE_MAX_STOP_TIMEOUT_SECONDS - HANDBACK_MARGIN_SECONDS
        if self.environment in ("dev", "staging", "prod") and (
            self.shutdown_grace_seconds > longest_grace
        ):
            raise ValueError(
                f"SHUTDOWN_GRACE_SECONDS must be at most {longest_grace} s: the worker needs "
                f"{HANDBACK_MARGIN_SECONDS} s after it to hand jobs back before Fargate's "
                f"{FARGATE_MAX_STOP_TIMEOUT_SECONDS} s stopTimeout"
            )
        return self

    @property
    def prefetch(self) -> int:
        """Jobs held beyond the running ones (WORKER_PREFETCH, default WORKER_CONCURRENCY)."""
        return self.worker_concurrency if self.worker_prefetch is None else self.worker_prefetch

    @property
    def renew_interval(self) -> float:
        """Seconds between lease renewals."""
        return self.lease_renew_seconds or self.lease_seconds / 3

    @property
    def extra_job_modules(self) -> tuple[str, ...]:
        """JOB_MODULES as a tuple of module paths."""
        return tuple(m.strip() for m in self.job_modules.split(",") if m.strip())

    @property
    def redis_configured(self) -> bool:
        """Whether a Redis server was named; if not, local runs embed Valkey."""
        return bool(self.redis_url or self.redis_host)

    def resolved_redis_url(self) -> str:
        """The connection URL, built from the parts when `REDIS_URL` is not given."""
        if self.redis_url:
            return self.redis_url
        if not self.redis_host:
            raise ValueError("Set REDIS_URL or REDIS_HOST (or use `jobqueue run` locally)")
        scheme = "rediss" if self.redis_tls else "redis"
        auth = ""
        if self.redis_password is not None:
            auth = ":" + quote(self.redis_password.get_secret_value(), safe="") + "@"
        return f"{scheme}://{auth}{self.redis_host}:{self.redis_port}/0"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
