"""The Pulumi program run under `pulumi.runtime.set_mocks`, and what it declared.

No CLI and no cloud: the mocks answer every resource registration with its inputs plus the
computed attributes the program reads (ARNs, DNS names, endpoints), and answer the two invokes the
program makes (caller identity, availability zones).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import runpy
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_docker_build  # noqa: F401 - loaded before the program, like pulumi_aws's modules
import pytest
import yaml
from pulumi.runtime import settings as pulumi_settings

from infra.config import StackSettings, read_stack_settings

# pulumi-aws warns at import time about its *own* deprecated classes (e.g. ec2.EncryptionControl),
# which pytest's `filterwarnings = error` would turn into failures. Import the SDK modules the
# program uses once, here, with only that category silenced; the program's own warnings still fail.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    for _module in (
        "appautoscaling",
        "cloudwatch",
        "ec2",
        "ecr",
        "ecs",
        "elasticache",
        "iam",
        "lb",
        "s3",
        "secretsmanager",
        "sns",
        "vpc",
    ):
        # The SDK's modules load lazily: touching an attribute runs (and warns) now.
        hasattr(importlib.import_module(f"pulumi_aws.{_module}"), "_force_load")

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = ROOT / "infra" / "__main__.py"
PROJECT = "jobqueue"
ACCOUNT = "123456789012"
SECRET_SENTINEL = "MOCK-SECRET-VALUE-"


@dataclass
class Resource:
    """One registered resource: its type token, logical name, inputs and mocked state."""

    typ: str
    name: str
    inputs: dict[str, Any]
    state: dict[str, Any]
    resource_id: str
    # From the resource's options, which the mocks never see (recorded by a transformation).
    ignore_changes: list[str] = field(default_factory=list)


@dataclass
class ProgramRun:
    """Everything one run of the program declared."""

    resources: list[Resource] = field(default_factory=list)
    exports: dict[str, Any] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)
    stack: str = "dev"
    # (type token, name) -> ResourceOptions.ignore_changes, filled before registration.
    ignore_changes: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    # Every invoke the program made: (token, arguments).
    invokes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # (type token, name) -> names of the resources it explicitly depends on.
    depends_on: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    # (type token, name) -> the parent's (type token, name), from the resource options.
    parents: dict[tuple[str, str], tuple[str, str] | None] = field(default_factory=dict)

    def record_options(
        self, args: pulumi.ResourceTransformationArgs
    ) -> pulumi.ResourceTransformationResult | None:
        """A stack transformation that only watches: keeps what the mocks cannot see."""
        self.ignore_changes[(args.type_, args.name)] = list(args.opts.ignore_changes or [])
        self.depends_on[(args.type_, args.name)] = [
            d._name for d in (args.opts.depends_on or []) if hasattr(d, "_name")
        ]
        parent = args.opts.parent
        # The root stack is every top-level resource's parent but is not part of URNs.
        self.parents[(args.type_, args.name)] = (
            (parent._type, parent._name)
            if parent is not None and parent._type != "pulumi:pulumi:Stack"
            else None
        )
        return None

    def urn(self, typ: str, name: str) -> str:
        """The URN the engine gives the resource: its ancestors' types, then its own, and name."""
        chain = [typ]
        parent = self.parents.get((typ, name))
        while parent is not None:
            chain.insert(0, parent[0])
            parent = self.parents.get(parent)
        return f"urn:pulumi:{self.stack}::{PROJECT}::{'$'.join(chain)}::{name}"

    def urns(self) -> list[str]:
        """Every resource's URN, components included (they are registered too)."""
        return [self.urn(r.typ, r.name) for r in self.resources]

    @property
    def settings(self) -> StackSettings:
        """The typed settings the program derived from this run's config."""
        return read_stack_settings(self.config, self.stack, self.config.get("aws:region"))

    @property
    def prefix(self) -> str:
        """The prefix of every logical name: `<project>-<stack>`."""
        return f"{PROJECT}-{self.stack}"

    def of_type(self, typ: str) -> list[Resource]:
        """Resources of one type token, e.g. `aws:ecs/service:Service`."""
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str, name_contains: str = "") -> Resource:
        """The single resource of a type whose name contains a fragment."""
        found = [r for r in self.of_type(typ) if name_contains in r.name]
        assert len(found) == 1, (
            f"expected one {typ} *{name_contains}*, got {[r.name for r in found]}"
        )
        return found[0]

    def by_id(self, resource_id: str) -> Resource:
        """The resource a mocked id refers to."""
        return next(r for r in self.resources if r.resource_id == resource_id)

    def container(self, role: str) -> dict[str, Any]:
        """The parsed container definition of one role's task definition."""
        task = self.one("aws:ecs/taskDefinition:TaskDefinition", f"-{role}-task")
        (definition,) = json.loads(task.inputs["containerDefinitions"])
        return definition

    def policies(self) -> list[tuple[str, dict[str, Any]]]:
        """Every IAM policy document the program writes, with its resource name."""
        docs = [
            (r.name, json.loads(r.inputs["policy"]))
            for r in self.of_type("aws:iam/rolePolicy:RolePolicy")
        ]
        docs += [
            (r.name, json.loads(r.inputs["assumeRolePolicy"]))
            for r in self.of_type("aws:iam/role:Role")
        ]
        return docs


def _computed(typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """The attributes AWS would compute that the program reads back."""
    physical = inputs.get("name") or name
    extra: dict[str, Any] = {
        "arn": f"arn:aws:mock:us-east-1:{ACCOUNT}:{typ.split(':')[1]}/{physical}",
        "name": physical,
    }
    if typ == "aws:ecr/repository:Repository":
        extra["repositoryUrl"] = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/{physical}"
        extra["registryId"] = ACCOUNT
    elif typ == "docker-build:index:Image":
        # The pushed tag with the digest the registry returned: what tasks must run.
        extra["ref"] = f"{inputs['tags'][0]}@sha256:{'0' * 63}1"
        extra["digest"] = f"sha256:{'0' * 63}1"
    elif typ == "aws:lb/loadBalancer:LoadBalancer":
        extra["dnsName"] = f"{name}.us-east-1.elb.amazonaws.com"
        extra["arnSuffix"] = f"app/{name}/0123456789abcdef"
    elif typ == "aws:lb/targetGroup:TargetGroup":
        extra["arnSuffix"] = f"targetgroup/{name}/0123456789abcdef"
    elif typ == "aws:elasticache/replicationGroup:ReplicationGroup":
        extra["primaryEndpointAddress"] = f"master.{name}.cache.amazonaws.com"
        extra["configurationEndpointAddress"] = f"clustercfg.{name}.cache.amazonaws.com"
    elif typ == "aws:s3/bucket:Bucket":
        extra["bucket"] = f"{name}-bucket-1234"
        extra["arn"] = f"arn:aws:s3:::{name}-bucket-1234"
    elif typ == "aws:cloudwatch/logGroup:LogGroup":
        extra["arn"] = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{physical}"
    elif typ == "random:index/randomPassword:RandomPassword":
        extra["result"] = SECRET_SENTINEL + name
    return {**extra, **inputs}


class RecordingMocks(pulumi.runtime.Mocks):
    """Pulumi mocks that keep every registration."""

    def __init__(self, run: ProgramRun) -> None:
        self.run = run

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        # Logical names repeat across types (the worker's security group and its repository
        # are both `<prefix>-worker`); AWS ids never do, so neither do these.
        resource_id = f"{args.typ.rsplit(':', 1)[-1].lower()}-{args.name}-id"
        state = _computed(args.typ, args.name, dict(args.inputs))
        ignored = self.run.ignore_changes.get((args.typ, args.name), [])
        self.run.resources.append(
            Resource(args.typ, args.name, dict(args.inputs), state, resource_id, ignored)
        )
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        self.run.invokes.append((args.token, dict(args.args)))
        if args.token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {
                "authorizationToken": SECRET_SENTINEL + "ecr-token",
                "userName": "AWS",
                "password": SECRET_SENTINEL + "ecr-password",
                "proxyEndpoint": f"https://{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com",
                "expiresAt": "2030-01-01T00:00:00Z",
                "id": ACCOUNT,
            }
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT,
                "arn": f"arn:aws:iam::{ACCOUNT}:user/ci",
                "id": ACCOUNT,
                "userId": "AIDA",
            }
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            # Zone names map to different zone IDs in every account: the order here is not the
            # zone IDs' order on purpose.
            names = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"]
            return {
                "names": names,
                "zoneIds": ["use1-az4", "use1-az6", "use1-az1", "use1-az2"],
                "id": "us-east-1",
            }
        raise AssertionError(f"unexpected invoke {args.token}")


def dev_config() -> dict[str, str]:
    """The committed dev stack's config, as the CLI would hand it to the program."""
    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in doc["config"].items()}


def region_only_config() -> dict[str, str]:
    """A new stack after `pulumi config set aws:region ...` and nothing else."""
    return {"aws:region": "us-east-1"}


def prod_config() -> dict[str, str]:
    """A prod-like stack: 3 AZs, HTTPS, larger nodes, alerts by e-mail, CI-built images."""
    return {
        **dev_config(),
        "jobqueue:azCount": "3",
        "jobqueue:cacheNodeType": "cache.r7g.large",
        "jobqueue:cpuArchitecture": "ARM64",
        "jobqueue:imageTag": "git-0123abc",
        "jobqueue:emailFrom": "jobs@example.com",
        "jobqueue:jobModules": "acme_jobs.billing,acme_jobs.reports",
        "jobqueue:certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc",
        "jobqueue:httpRedirect": "true",
        "jobqueue:apiCpu": "512",
        "jobqueue:apiMemory": "1024",
        "jobqueue:apiMinCount": "2",
        "jobqueue:apiMaxCount": "10",
        "jobqueue:workerCpu": "1024",
        "jobqueue:workerMemory": "2048",
        "jobqueue:workerMinCount": "1",
        "jobqueue:workerMaxCount": "50",
        "jobqueue:workerUseSpot": "true",
        "jobqueue:logRetentionDays": "90",
        "jobqueue:containerInsights": "true",
        "jobqueue:alertEmail": "oncall@example.com",
    }


def run_program(config: dict[str, str], stack: str = "dev") -> ProgramRun:
    """Execute infra/__main__.py under mocks with `config` and return what it declared.

    Pulumi drives its futures on the calling thread's event loop and runs its mock RPCs on the
    loop's default executor, and both make themselves a loop when their thread has none, never
    closing it. Left to that, the loops are orphaned (in pytest's main thread as soon as
    pytest-asyncio installs its own) and their unclosed self-pipes fail a later, unrelated test
    with a ResourceWarning. So the program runs in a thread of its own, on loops this harness
    creates and closes: one for the program, one per executor thread.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pulumi-program") as pool:
        return pool.submit(_run_program_on_own_loops, config, stack).result()


def _run_program_on_own_loops(config: dict[str, str], stack: str) -> ProgramRun:
    thread_loops: list[asyncio.AbstractEventLoop] = []

    def give_thread_a_loop() -> None:
        thread_loops.append(asyncio.new_event_loop())
        asyncio.set_event_loop(thread_loops[-1])

    rpc_threads = ThreadPoolExecutor(
        max_workers=4, thread_name_prefix="pulumi-rpc", initializer=give_thread_a_loop
    )
    give_thread_a_loop()
    thread_loops[0].set_default_executor(rpc_threads)
    try:
        return _run_program(config, stack)
    finally:
        rpc_threads.shutdown(wait=True)
        asyncio.set_event_loop(None)
        for loop in thread_loops:
            loop.close()


def _run_program(config: dict[str, str], stack: str) -> ProgramRun:
    run = ProgramRun(config=config, stack=stack)
    pulumi_settings.ROOT.set(None)  # a fresh root stack per run, so exports do not leak
    pulumi.runtime.set_mocks(RecordingMocks(run), project=PROJECT, stack=stack, preview=False)
    pulumi.runtime.set_all_config(config)

    @pulumi.runtime.test
    def program() -> pulumi.Output[None]:
        pulumi.runtime.register_stack_transformation(run.record_options)
        runpy.run_path(str(PROGRAM), run_name="__main__")
        stack_resource = pulumi_settings.get_root_resource()
        assert stack_resource is not None
        outputs = dict(stack_resource.outputs)  # type: ignore[attr-defined]
        return pulumi.Output.all(**outputs).apply(run.exports.update)

    program()
    return run


@pytest.fixture(scope="session")
def dev_run() -> ProgramRun:
    return run_program(dev_config())


@pytest.fixture(scope="session")
def fresh_run() -> ProgramRun:
    """A new stack with only aws:region set (not a dev environment: production defaults)."""
    return run_program(region_only_config(), stack="fresh")


@pytest.fixture(scope="session")
def prod_run() -> ProgramRun:
    return run_program(prod_config(), stack="prod")


@pytest.fixture(params=["dev", "prod"])
def any_run(
    request: pytest.FixtureRequest, dev_run: ProgramRun, prod_run: ProgramRun
) -> ProgramRun:
    return {"dev": dev_run, "prod": prod_run}[request.param]


RunFactory = Callable[[dict[str, str]], ProgramRun]
