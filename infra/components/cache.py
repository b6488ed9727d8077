"""ElastiCache for Valkey: the queue's only state.

Cluster mode is off by default. The queue puts every key of a queue in one hash slot (`{queue}`),
so its Lua scripts stay single-slot; sharding therefore spreads *different queues* over shards but
never one busy queue (the service connects to the slot's primary: REDIS_CLUSTER, see
service/queue/cluster.py). One primary with a replica in another AZ (Multi-AZ, automatic failover)
is the simpler, cheaper shape until one queue outgrows the largest node; `cacheClusterMode: true`
is there for deployments that run many queues.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_random as random

REDIS_PORT = 6379
# A job hash holds its taskiq message (~320 bytes), above the default hash-max-listpack-value of
# 64, so every job hash would be a hashtable. At 1024 a queued job is a compact listpack: ~40%
# less memory per job (docs/benchmarks.md). Lookups stay cheap: a job hash has ~20 fields.
HASH_MAX_LISTPACK_VALUE = 1024
# The queue's data must never be evicted: a job hash with a TTL (a finished job kept for its
# retention) is still referenced from a state set, and an evicted pending job is a lost job.
# With noeviction a full node refuses writes (OOM errors) and the API answers 503, which clients
# retry; the memory alarm pages long before that.
MAXMEMORY_POLICY = "noeviction"


@dataclass
class CacheArgs:
    """Shape and placement of the replication group."""

    subnet_ids: list[pulumi.Output[str]]
    security_group_id: pulumi.Input[str]
    notification_topic_arn: pulumi.Input[str]
    node_type: str
    engine_version: str
    cluster_mode: bool
    shards: int
    replicas_per_shard: int
    snapshot_retention_days: int
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def keeps_snapshots(self) -> bool:
        """Where daily snapshots are kept, deleting the group keeps a final one too."""
        return self.snapshot_retention_days > 0

    def __post_init__(self) -> None:
        if self.replicas_per_shard < 1:
            raise ValueError("cacheReplicas must be >= 1: Multi-AZ failover needs a replica")
        if not self.cluster_mode and self.shards != 1:
            raise ValueError("cacheShards > 1 needs cacheClusterMode: true")

    @property
    def node_ids_suffixes(self) -> list[str]:
        """Suffixes ElastiCache appends to the group id to name each node (for metrics)."""
        nodes = range(1, self.replicas_per_shard + 2)
        if not self.cluster_mode:
            return [f"-{n:03d}" for n in nodes]
        return [f"-{s:04d}-{n:03d}" for s in range(1, self.shards + 1) for n in nodes]


class Cache(pulumi.ComponentResource):
    """Valkey replication group: TLS, at-rest encryption, auth token in Secrets Manager."""

    endpoint: pulumi.Output[str]
    port: int
    auth_secret_arn: pulumi.Output[str]
    node_ids: list[pulumi.Output[str]]

    def __init__(
        self, name: str, args: CacheArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Create the token, its secret, the security group and the replication group."""
        super().__init__("jobqueue:infra:Cache", name, None, opts)
        self._name = name
        self._args = args
        self._child = pulumi.ResourceOptions(parent=self)
        token = random.RandomPassword(
            f"{name}-auth-token",
            length=48,
            # ElastiCache refuses @, " and / in tokens; alphanumerics also need no URL quoting.
            special=False,
            opts=self._child,
        )
        secret = aws.secretsmanager.Secret(
            f"{name}-auth-token",
            description="Valkey AUTH token for the job queue (REDIS_PASSWORD)",
            recovery_window_in_days=7,
            tags=args.tags,
            opts=self._child,
        )
        aws.secretsmanager.SecretVersion(
            f"{name}-auth-token",
            secret_id=secret.id,
            secret_string=token.result,
            opts=self._child,
        )
        group = self._replication_group(token.result)
        self.port = REDIS_PORT
        self.endpoint = (
            group.configuration_endpoint_address
            if args.cluster_mode
            else group.primary_endpoint_address
        )
        self.auth_secret_arn = secret.arn
        # Known at preview time in number, so one alarm per node can be declared up front.
        self.node_ids = [pulumi.Output.concat(group.id, s) for s in args.node_ids_suffixes]
        self.register_outputs({"endpoint": self.endpoint, "auth_secret_arn": self.auth_secret_arn})

    def _parameter_group(self) -> aws.elasticache.ParameterGroup:
        """The engine's defaults, but no eviction, compact job hashes (and cluster mode)."""
        args = self._args
        parameters = [
            aws.elasticache.ParameterGroupParameterArgs(
                name="maxmemory-policy", value=MAXMEMORY_POLICY
            ),
            aws.elasticache.ParameterGroupParameterArgs(
                name="hash-max-listpack-value", value=str(HASH_MAX_LISTPACK_VALUE)
            ),
        ]
        if args.cluster_mode:  # a custom group starts from the cluster-mode-disabled defaults
            parameters.append(
                aws.elasticache.ParameterGroupParameterArgs(name="cluster-enabled", value="yes")
            )
        return aws.elasticache.ParameterGroup(
            f"{self._name}-valkey-params",
            family=f"valkey{args.engine_version.split('.')[0]}",
            description="jobqueue: never evict, compact job hashes",
            parameters=parameters,
            tags=args.tags,
            opts=self._child,
        )

    def _replication_group(self, token: pulumi.Output[str]) -> aws.elasticache.ReplicationGroup:
        args = self._args
        subnets = aws.elasticache.SubnetGroup(
            f"{self._name}-subnets", subnet_ids=args.subnet_ids, tags=args.tags, opts=self._child
        )
        cluster = args.cluster_mode
        return aws.elasticache.ReplicationGroup(
            f"{self._name}-valkey",
            description="jobqueue queue state",
            engine="valkey",
            engine_version=args.engine_version,
            parameter_group_name=self._parameter_group().name,
            node_type=args.node_type,
            port=REDIS_PORT,
            cluster_mode="enabled" if args.cluster_mode else "disabled",
            automatic_failover_enabled=True,
            multi_az_enabled=True,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            at_rest_encryption_enabled=True,
            auth_token=token,
            # pulumi-aws 7 requires a strategy with auth_token; ROTATE keeps the old token valid
            # during a change so running tasks are not cut off mid-rotation.
            auth_token_update_strategy="ROTATE",  # noqa: S106 - a mode, not a secret
            subnet_group_name=subnets.name,
            security_group_ids=[args.security_group_id],
            snapshot_retention_limit=args.snapshot_retention_days,
            # A `pulumi destroy` (or a replacement) keeps the queue's last state where snapshots
            # are kept at all.
            final_snapshot_identifier=f"{self._name}-final" if args.keeps_snapshots else None,
            # Failovers, node replacements and maintenance reach the on-call topic.
            notification_topic_arn=args.notification_topic_arn,
            auto_minor_version_upgrade=True,
            apply_immediately=False,
            num_cache_clusters=None if cluster else args.replicas_per_shard + 1,
            num_node_groups=args.shards if cluster else None,
            replicas_per_node_group=args.replicas_per_shard if cluster else None,
            tags=args.tags,
            opts=self._child,
        )
