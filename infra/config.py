"""The stack configuration: every key the program reads, with its default, read and checked once.

`aws:region` is the only key a stack must set. Everything else has a default that deploys a
working system; `environment` defaults to the stack name, and a few defaults differ between
`dev` and every other environment (say so in `meaning`). A bad value stops the program before
any resource is declared, with a message naming the key and what it accepts.

Each key is declared once, in `KEYS`, with its default and meaning; docs/cloud-deployment.md
lists them (a test checks the table against `KEYS`), and the components receive typed settings,
never a `pulumi.Config`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from infra.scaling import ScalingPlan
from service.settings import FARGATE_MAX_STOP_TIMEOUT_SECONDS, HANDBACK_MARGIN_SECONDS

NAMESPACE = "jobqueue"
DEV_ENVIRONMENTS = frozenset({"dev", "test", "sandbox"})
ENVIRONMENT_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
QUEUE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[A-Za-z0-9-]+$")
IMAGE_TAG_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
NODE_TYPE_PATTERN = re.compile(r"cache\.[a-z0-9]+\.[a-z0-9]+")
MODULE_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827)
FARGATE_CPU = (256, 512, 1024, 2048, 4096)
# The workers get Fargate's longest stopTimeout; their grace may take all of it but the time
# they need after it to hand jobs back and exit (both numbers are the service's own).
WORKER_STOP_TIMEOUT_SECONDS = FARGATE_MAX_STOP_TIMEOUT_SECONDS
MAX_SHUTDOWN_GRACE_SECONDS = WORKER_STOP_TIMEOUT_SECONDS - HANDBACK_MARGIN_SECONDS


class ConfigError(ValueError):
    """A stack key holds a value the program cannot deploy; the message names the key."""


@dataclass(frozen=True)
class Key:
    """One stack key: its name (without the `jobqueue:` namespace), default and meaning.

    `default` is what the docs show; a literal one is checked against the reader's own default
    (tests/infra/test_config.py), a described one is in parentheses.
    """

    name: str
    default: str
    meaning: str


# A table, one row per key, alike by design (a duplicate finder pairs its rows): the docs'
# table is checked against it row by row.
KEYS: tuple[Key, ...] = (
    Key(
        "environment", "(the stack name)", "Environment dimension of metrics, ENVIRONMENT of tasks"
    ),
    Key("queueName", "default", "The queue the services use (QUEUE_NAME)"),
    Key("keyPrefix", "jq", "Redis key prefix (KEY_PREFIX)"),
    Key("jobModules", "(none)", "Comma-separated modules with extra job types (JOB_MODULES)"),
    Key("vpcCidr", "10.40.0.0/16", "VPC address range, /16 or larger"),
    Key("azCount", "2", "Availability zones, 2-3 (by zone ID, opt-in zones excluded)"),
    Key("natPerAz", "false in dev, else true", "One NAT gateway per AZ instead of one"),
    Key("flowLogs", "true", "VPC flow logs to CloudWatch Logs"),
    Key("flowLogRetentionDays", "30 in dev, else 365", "Retention of the flow log group"),
    Key("cacheNodeType", "cache.t4g.micro", "ElastiCache node type"),
    Key("cacheEngineVersion", "8.0", "Valkey engine version (major.minor)"),
    Key("cacheClusterMode", "false", "Valkey cluster mode (for many queues)"),
    Key("cacheShards", "1", "Shards in cluster mode, 1-30"),
    Key("cacheReplicas", "1", "Replicas per shard, 1-5 (Multi-AZ failover)"),
    Key("cacheSnapshotRetentionDays", "1 in dev, else 7", "Daily snapshots kept; 0 = none"),
    Key(
        "imageTag",
        "(build the images)",
        "Deploy this already pushed tag instead of building images",
    ),
    Key("ecrKeepImages", "20", "Tagged images kept per repository, 1-1000"),
    Key("cpuArchitecture", "X86_64", "Fargate CPU architecture: X86_64 or ARM64"),
    Key("apiCpu", "256", "API task CPU units"),
    Key("apiMemory", "512", "API task memory (MiB)"),
    Key("apiMinCount", "1", "API tasks at least"),
    Key("apiMaxCount", "2", "API tasks at most"),
    Key("apiCpuTargetPercent", "60", "API CPU target of its scaling, 10-90"),
    Key("apiRequestsPerTarget", "500", "API requests per task per minute target"),
    Key(
        "certificateArn",
        "(none: internal ALB)",
        "ACM certificate: HTTPS (TLS 1.2+) and an 80->443 redirect",
    ),
    Key(
        "allowPublicPlainHttp",
        "false",
        "Without a certificate, put the ALB on the internet on plain HTTP (else it is internal)",
    ),
    Key(
        "httpRedirect",
        "false",
        "With a certificate, also listen on port 80 and only redirect to HTTPS (for browsers)",
    ),
    Key("albAccessLogs", "false in dev, else true", "ALB access logs to an S3 bucket"),
    Key("workerCpu", "512", "Worker task CPU units"),
    Key("workerMemory", "1024", "Worker task memory (MiB)"),
    Key("workerCount", "2", "Worker processes per task (WORKER_COUNT), 1-64"),
    Key("workerConcurrency", "10", "Jobs per worker process at once (WORKER_CONCURRENCY)"),
    Key("workerMinCount", "1", "Worker tasks at least (0 only without the canary)"),
    Key("workerMaxCount", "4", "Worker tasks at most"),
    Key("workerUseSpot", "false", "Run workers on Fargate Spot"),
    Key(
        "shutdownGraceSeconds",
        "90",
        f"Running jobs' grace on SIGTERM; <= {MAX_SHUTDOWN_GRACE_SECONDS}",
    ),
    Key("leaseSeconds", "30", "Job lease (LEASE_SECONDS)"),
    Key("acceptableWaitSeconds", "60", "How long a job may wait before it starts"),
    Key("averageJobSeconds", "10", "Mean job run time (for the default task throughput)"),
    Key(
        "taskJobsPerSecond",
        "(workerCount x workerConcurrency / averageJobSeconds)",
        "Measured jobs per second one worker task completes (a scale test measures it)",
    ),
    Key("workerScaleOutCooldown", "120", "Seconds between worker scale-outs"),
    Key("workerScaleInCooldown", "300", "Seconds between worker scale-ins"),
    Key("workerTaskStartSeconds", "90", "Time a new worker task takes to run jobs (simulator)"),
    Key("workerProtectionMinutes", "15", "Bound of a busy task's scale-in protection, 1-2880"),
    Key("metricsCpu", "256", "Metrics task CPU units"),
    Key("metricsMemory", "512", "Metrics task memory (MiB)"),
    Key("canaryEnabled", "true", "Enqueue a canary noop job every minute and alarm on it"),
    Key("artifactRetentionDays", "30", "Days job outputs live in the artifact bucket"),
    Key("emailFrom", "(none)", "Sender of email jobs (SES); empty = email jobs fail, nothing else"),
    Key("logRetentionDays", "30", "Retention of the services' log groups"),
    Key("containerInsights", "false", "ECS Container Insights on the cluster"),
    Key("alertEmail", "(none)", "E-mail address subscribed to the alarm topic"),
    Key("alarmOldestPendingAgeSeconds", "300", "Page when a job waits longer"),
    Key("alarmFailureRatePercent", "10", "Page when more finished jobs fail"),
    Key("alarmApi5xxPer5Minutes", "10", "Page on more API 5xx in 5 minutes"),
    Key("alarmRedisMemoryPercent", "80", "Page when Valkey memory use is higher"),
    Key("alarmCanaryLatencySeconds", "30", "Page when the canary takes longer"),
)
KEY_NAMES = frozenset(k.name for k in KEYS)
N = TypeVar("N", int, float)


@dataclass(frozen=True)
class NetworkSettings:
    """The VPC's shape and hygiene."""

    cidr: str
    az_count: int
    nat_per_az: bool
    flow_logs: bool
    flow_log_retention_days: int


@dataclass(frozen=True)
class CacheSettings:
    """The Valkey replication group."""

    node_type: str
    engine_version: str
    cluster_mode: bool
    shards: int
    replicas: int
    snapshot_retention_days: int


@dataclass(frozen=True)
class TaskSettings:
    """One role's Fargate size."""

    cpu: int
    memory: int


@dataclass(frozen=True)
class EdgeSettings:
    """How the API is reached."""

    certificate_arn: str | None
    allow_public_plain_http: bool
    access_logs: bool
    # With TLS: port 80 answers a redirect. Off by default: an API client sending its key to
    # http:// has already leaked it by the time it reads the redirect; closed, it gets nothing.
    http_redirect: bool = False

    @property
    def internet_facing(self) -> bool:
        """Only with TLS, or when plain HTTP on the internet was asked for by name."""
        return self.certificate_arn is not None or self.allow_public_plain_http


@dataclass(frozen=True)
class ApiSettings:
    """The API service."""

    size: TaskSettings
    min_count: int
    max_count: int
    cpu_target_percent: float
    requests_per_target: int


@dataclass(frozen=True)
class WorkerSettings:
    """The worker service: processes, shutdown timing and the scaling plan."""

    size: TaskSettings
    count: int
    concurrency: int
    use_spot: bool
    shutdown_grace_seconds: float
    lease_seconds: float
    protection_minutes: int
    scaling: ScalingPlan


@dataclass(frozen=True)
class EmailSettings:
    """SES sending; `sender` None means email jobs fail, not the deploy.

    No identity key: SES checks the sender's identity and, in the sandbox, each recipient's, so
    the worker may use the account's identities (`identity/*`) fenced by `ses:FromAddress`.
    """

    sender: str | None


@dataclass(frozen=True)
class AlarmSettings:
    """When to page and whom."""

    alert_email: str | None
    oldest_pending_age_seconds: float
    failure_rate_percent: float
    api_5xx_per_5_minutes: float
    redis_memory_percent: float
    canary_latency_seconds: float


@dataclass(frozen=True)
class StackSettings:
    """Everything the program needs, typed and checked."""

    region: str
    stack: str
    environment: str
    queue_name: str
    key_prefix: str
    job_modules: tuple[str, ...]
    network: NetworkSettings
    cache: CacheSettings
    image_tag: str | None
    ecr_keep_images: int
    cpu_architecture: str
    edge: EdgeSettings
    api: ApiSettings
    worker: WorkerSettings
    metrics_size: TaskSettings
    canary_enabled: bool
    artifact_retention_days: int
    email: EmailSettings
    log_retention_days: int
    container_insights: bool
    alarms: AlarmSettings

    @property
    def is_dev(self) -> bool:
        """Dev-like environments get the cheaper defaults."""
        return self.environment in DEV_ENVIRONMENTS


@dataclass
class ConfigReader:
    """Reads `jobqueue:<key>` values (strings, as the CLI stores them) with checked parsing."""

    values: Mapping[str, str]
    read: set[str] = field(default_factory=set)

    def raw(self, name: str) -> str | None:
        """The key's text, None when unset or empty (an empty value means "the default")."""
        if name not in KEY_NAMES:
            raise KeyError(f"{name} is not declared in infra.config.KEYS")
        self.read.add(name)
        value = self.values.get(f"{NAMESPACE}:{name}")
        return None if value is None or value.strip() == "" else value.strip()

    def text(self, name: str, default: str, pattern: re.Pattern[str], allowed: str) -> str:
        """A string matching `pattern`; `allowed` describes it in the error."""
        value = self.optional(name, pattern, allowed)
        return default if value is None else value

    def optional(self, name: str, pattern: re.Pattern[str], allowed: str) -> str | None:
        """A string matching `pattern`, or None when unset."""
        value = self.raw(name)
        if value is not None and not pattern.fullmatch(value):
            raise _bad(name, value, allowed)
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        """One of `choices`."""
        value = self.raw(name) or default
        if value not in choices:
            raise _bad(name, value, f"one of {', '.join(choices)}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        """true or false."""
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() not in ("true", "false"):
            raise _bad(name, value, "true or false")
        return value.lower() == "true"

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        """An integer in low..high."""
        return self._bounded(name, default, int, (low, high), f"an integer in {low}..{high}")

    def number(self, name: str, default: float, low: float, high: float) -> float:
        """A number in low..high."""
        return self._bounded(name, default, float, (low, high), f"a number in {low:g}..{high:g}")

    def _bounded(
        self, name: str, default: N, parse: Callable[[str], N], bounds: tuple[N, N], allowed: str
    ) -> N:
        """The key's text parsed, within `bounds`; `allowed` describes both in the error."""
        value = self.raw(name)
        if value is None:
            return default
        try:
            parsed = parse(value)
        except ValueError:
            raise _bad(name, value, allowed) from None
        if not bounds[0] <= parsed <= bounds[1]:
            raise _bad(name, value, allowed)
        return parsed

    def member(self, name: str, default: int, allowed: tuple[int, ...]) -> int:
        """An integer from a fixed list (AWS accepts only those)."""
        value = self.integer(name, default, min(allowed), max(allowed))
        if value not in allowed:
            raise _bad(name, str(value), f"one of {', '.join(map(str, allowed))}")
        return value


def _bad(name: str, value: str, allowed: str) -> ConfigError:
    return ConfigError(f"{NAMESPACE}:{name} = {value!r} is not valid: it must be {allowed}")


def read_stack_settings(values: Mapping[str, str], stack: str, region: str | None) -> StackSettings:
    """Parse and check every key; ConfigError names the first bad one."""
    if not region:
        raise ConfigError("aws:region is required: pulumi config set aws:region <region>")
    reader = ConfigReader(values)
    environment = reader.text(
        "environment", stack, ENVIRONMENT_PATTERN, "lower-case letters, digits and -, <= 32"
    )
    dev = environment in DEV_ENVIRONMENTS
    worker = _worker(reader)
    canary = reader.boolean("canaryEnabled", default=True)
    if canary and worker.scaling.min_tasks == 0:
        raise ConfigError(
            f"{NAMESPACE}:workerMinCount = 0 is not valid while canaryEnabled is true: the canary "
            "is a job every minute, so the fleet never rests at zero and every canary would "
            "wait for a task to start (and page); set workerMinCount >= 1 or canaryEnabled false"
        )
    return StackSettings(
        region=region,
        stack=stack,
        environment=environment,
        queue_name=reader.text("queueName", "default", QUEUE_NAME_PATTERN, "1-64 of A-Za-z0-9_.-"),
        key_prefix=reader.text("keyPrefix", "jq", QUEUE_NAME_PATTERN, "1-64 of A-Za-z0-9_.-"),
        job_modules=_job_modules(reader),
        network=_network(reader, dev),
        cache=_cache(reader, dev),
        image_tag=reader.optional("imageTag", IMAGE_TAG_PATTERN, "a Docker tag"),
        ecr_keep_images=reader.integer("ecrKeepImages", 20, 1, 1000),
        cpu_architecture=reader.choice("cpuArchitecture", "X86_64", ("X86_64", "ARM64")),
        edge=_edge(reader, dev),
        api=_api(reader),
        worker=worker,
        metrics_size=_size(reader, "metrics", 256, 512),
        canary_enabled=canary,
        artifact_retention_days=reader.integer("artifactRetentionDays", 30, 1, 3650),
        email=_email(reader),
        log_retention_days=reader.member("logRetentionDays", 30, LOG_RETENTION_DAYS),
        container_insights=reader.boolean("containerInsights", default=False),
        alarms=_alarms(reader),
    )


def _job_modules(reader: ConfigReader) -> tuple[str, ...]:
    value = reader.raw("jobModules") or ""
    modules = tuple(m.strip() for m in value.split(",") if m.strip())
    for module in modules:
        if not MODULE_PATTERN.fullmatch(module):
            raise _bad("jobModules", value, "comma-separated dotted module paths")
    return modules


def _network(reader: ConfigReader, dev: bool) -> NetworkSettings:
    cidr = reader.raw("vpcCidr") or "10.40.0.0/16"
    try:
        network = ipaddress.ip_network(cidr)
    except ValueError:
        raise _bad("vpcCidr", cidr, "an IPv4 network such as 10.40.0.0/16") from None
    if network.version != 4 or not 8 <= network.prefixlen <= 16:
        raise _bad("vpcCidr", cidr, "an IPv4 network of prefix /8../16 (subnets are /20)")
    return NetworkSettings(
        cidr=cidr,
        az_count=reader.integer("azCount", 2, 2, 3),
        nat_per_az=reader.boolean("natPerAz", default=not dev),
        flow_logs=reader.boolean("flowLogs", default=True),
        # A year outside dev: flow logs are what an incident review reads, often months later.
        flow_log_retention_days=reader.member(
            "flowLogRetentionDays", 30 if dev else 365, LOG_RETENTION_DAYS
        ),
    )


def _cache(reader: ConfigReader, dev: bool) -> CacheSettings:
    cluster_mode = reader.boolean("cacheClusterMode", default=False)
    shards = reader.integer("cacheShards", 1, 1, 30)
    if shards > 1 and not cluster_mode:
        raise _bad("cacheShards", str(shards), "1 unless cacheClusterMode is true")
    return CacheSettings(
        node_type=reader.text(
            "cacheNodeType",
            "cache.t4g.micro",
            re.compile(r"cache\.[a-z0-9]+\.[a-z0-9]+"),
            "cache.*",
        ),
        engine_version=reader.text(
            "cacheEngineVersion", "8.0", re.compile(r"[7-9]\.\d+"), "a Valkey version 7.x-9.x"
        ),
        cluster_mode=cluster_mode,
        shards=shards,
        replicas=reader.integer("cacheReplicas", 1, 1, 5),
        snapshot_retention_days=reader.integer(
            "cacheSnapshotRetentionDays", 1 if dev else 7, 0, 35
        ),
    )


def _size(reader: ConfigReader, role: str, cpu: int, memory: int) -> TaskSettings:
    cpu_value = reader.member(f"{role}Cpu", cpu, FARGATE_CPU)
    # Fargate allows 0.5-2 GB at 0.25 vCPU, else 2-8 GB per vCPU.
    low, high = (512, 2048) if cpu_value == 256 else (cpu_value * 2, cpu_value * 8)
    memory_value = reader.integer(f"{role}Memory", memory, 512, 30720)
    if not low <= memory_value <= high:
        raise _bad(f"{role}Memory", str(memory_value), f"{low}..{high} with {role}Cpu={cpu_value}")
    return TaskSettings(cpu_value, memory_value)


def _edge(reader: ConfigReader, dev: bool) -> EdgeSettings:
    return EdgeSettings(
        certificate_arn=reader.optional("certificateArn", ARN_PATTERN, "an ACM certificate ARN"),
        allow_public_plain_http=reader.boolean("allowPublicPlainHttp", default=False),
        access_logs=reader.boolean("albAccessLogs", default=not dev),
        http_redirect=reader.boolean("httpRedirect", default=False),
    )


def _api(reader: ConfigReader) -> ApiSettings:
    min_count = reader.integer("apiMinCount", 1, 1, 100)
    max_count = reader.integer("apiMaxCount", max(2, min_count), min_count, 200)
    return ApiSettings(
        size=_size(reader, "api", 256, 512),
        min_count=min_count,
        max_count=max_count,
        cpu_target_percent=reader.number("apiCpuTargetPercent", 60.0, 10.0, 90.0),
        requests_per_target=reader.integer("apiRequestsPerTarget", 500, 10, 100_000),
    )


def _worker(reader: ConfigReader) -> WorkerSettings:
    count = reader.integer("workerCount", 2, 1, 64)
    concurrency = reader.integer("workerConcurrency", 10, 1, 1000)
    average = reader.number("averageJobSeconds", 10.0, 0.001, 86_400.0)
    default_rate = count * concurrency / average
    min_count = reader.integer("workerMinCount", 1, 0, 1000)
    plan = ScalingPlan(
        min_tasks=min_count,
        max_tasks=reader.integer("workerMaxCount", max(4, min_count), max(1, min_count), 1000),
        acceptable_wait_seconds=reader.number("acceptableWaitSeconds", 60.0, 1.0, 86_400.0),
        task_jobs_per_second=reader.number("taskJobsPerSecond", default_rate, 0.0001, 100_000.0),
        slots_per_task=count * concurrency,
        scale_out_cooldown_seconds=reader.integer("workerScaleOutCooldown", 120, 0, 3600),
        scale_in_cooldown_seconds=reader.integer("workerScaleInCooldown", 300, 0, 3600),
        task_start_seconds=reader.integer("workerTaskStartSeconds", 90, 0, 1800),
    )
    return WorkerSettings(
        size=_size(reader, "worker", 512, 1024),
        count=count,
        concurrency=concurrency,
        use_spot=reader.boolean("workerUseSpot", default=False),
        shutdown_grace_seconds=reader.number(
            "shutdownGraceSeconds", 90.0, 0.0, MAX_SHUTDOWN_GRACE_SECONDS
        ),
        lease_seconds=reader.number("leaseSeconds", 30.0, 5.0, 3600.0),
        protection_minutes=reader.integer("workerProtectionMinutes", 15, 1, 2880),
        scaling=plan,
    )


def _email(reader: ConfigReader) -> EmailSettings:
    return EmailSettings(sender=reader.optional("emailFrom", EMAIL_PATTERN, "an e-mail address"))


def _alarms(reader: ConfigReader) -> AlarmSettings:
    return AlarmSettings(
        alert_email=reader.optional("alertEmail", EMAIL_PATTERN, "an e-mail address"),
        oldest_pending_age_seconds=reader.number("alarmOldestPendingAgeSeconds", 300, 10, 86_400),
        failure_rate_percent=reader.number("alarmFailureRatePercent", 10, 0.1, 100),
        api_5xx_per_5_minutes=reader.number("alarmApi5xxPer5Minutes", 10, 1, 1_000_000),
        redis_memory_percent=reader.number("alarmRedisMemoryPercent", 80, 10, 99),
        canary_latency_seconds=reader.number("alarmCanaryLatencySeconds", 30, 1, 3600),
    )
