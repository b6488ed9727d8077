"""The Pulumi program, run under mocks for the dev stack and a prod-like stack."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pulumi_harness import (
    ROOT,
    SECRET_SENTINEL,
    ProgramRun,
    dev_config,
    run_program,
)

from service.metrics.contract import METRICS_BY_NAME, NAMESPACE

SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
TASK_DEF = "aws:ecs/taskDefinition:TaskDefinition"
SERVICE = "aws:ecs/service:Service"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
POLICY = "aws:appautoscaling/policy:Policy"
ANYWHERE = ("0.0.0.0/0", "::/0")
# Actions AWS does not let you scope to a resource (the service authorization reference lists
# no resource type for them), so Resource "*" is the only valid form.
UNSCOPABLE_ACTIONS = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}


SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"  # Pulumi's wire marker of a secret value


def secret_value(value: Any) -> str:
    """Unwrap a value that must have reached the engine marked secret."""
    assert isinstance(value, dict), f"not marked secret: {value!r}"
    assert SECRET_SIG_KEY in value, f"not marked secret: {value!r}"
    return str(value["value"])


# --- inventory --------------------------------------------------------------------------------


def count(run: ProgramRun, typ: str) -> int:
    return len(run.of_type(typ))


def test_dev_inventory_has_one_of_each_concern(dev_run: ProgramRun) -> None:
    components = sorted(r.typ for r in dev_run.resources if r.typ.startswith("jobqueue:infra:"))
    assert components == sorted(
        f"jobqueue:infra:{c}"
        for c in (
            "Alerts",
            "Network",
            "Firewall",
            "Cache",
            "Registry",
            "Images",
            "Artifacts",
            "AppSecrets",
            "Cluster",
            "Iam",
            "ApiService",
            "WorkerService",
            "MetricsService",
            "Observability",
        )
    )
    assert count(dev_run, "aws:ec2/vpc:Vpc") == 1
    assert count(dev_run, "aws:ec2/subnet:Subnet") == 4  # 2 AZs x public/private
    assert count(dev_run, "aws:ec2/natGateway:NatGateway") == 1
    assert count(dev_run, "aws:elasticache/replicationGroup:ReplicationGroup") == 1
    assert count(dev_run, "aws:ecr/repository:Repository") == 3
    assert count(dev_run, SERVICE) == 3
    assert count(dev_run, TASK_DEF) == 3
    assert count(dev_run, "aws:lb/loadBalancer:LoadBalancer") == 1
    assert count(dev_run, "aws:lb/listener:Listener") == 1  # no certificate: HTTP only
    assert count(dev_run, "aws:cloudwatch/logGroup:LogGroup") == 4  # 3 services + flow logs
    assert count(dev_run, "aws:iam/role:Role") == 7  # execution + task role per service, flow logs
    assert count(dev_run, "docker-build:index:Image") == 3  # built and pushed by `pulumi up`
    assert count(dev_run, "aws:cloudwatch/dashboard:Dashboard") == 1
    assert count(dev_run, "aws:sns/topicSubscription:TopicSubscription") == 0


def test_prod_spreads_over_three_azs_with_nat_per_az(prod_run: ProgramRun) -> None:
    subnets = prod_run.of_type("aws:ec2/subnet:Subnet")
    assert len(subnets) == 6
    assert len({s.inputs["availabilityZoneId"] for s in subnets}) == 3
    assert count(prod_run, "aws:ec2/natGateway:NatGateway") == 3
    private_tables = [
        r for r in prod_run.of_type("aws:ec2/routeTable:RouteTable") if "-private-" in r.name
    ]
    assert len({t.inputs["routes"][0]["natGatewayId"] for t in private_tables}) == 3


def test_prod_inventory_adds_https_nat_per_az_and_the_alert_subscription(
    prod_run: ProgramRun, dev_run: ProgramRun
) -> None:
    """The prod-like stack declares the same concerns; only the options change the counts.

    It deploys a CI-built tag, so it builds no image, and it keeps ALB access logs."""
    subscription = "aws:sns/topicSubscription:TopicSubscription"
    image = "docker-build:index:Image"
    kinds = {r.typ for r in prod_run.resources}
    assert kinds == (
        {r.typ for r in dev_run.resources} | {subscription, "jobqueue:infra:AccessLogs"}
    ) - {image}
    assert count(prod_run, "aws:ec2/vpc:Vpc") == 1
    assert count(prod_run, "aws:ec2/natGateway:NatGateway") == 3
    assert count(prod_run, "aws:ec2/eip:Eip") == 3
    assert count(prod_run, "aws:elasticache/replicationGroup:ReplicationGroup") == 1
    assert count(prod_run, "aws:ecr/repository:Repository") == 3
    assert count(prod_run, SERVICE) == 3
    assert count(prod_run, TASK_DEF) == 3
    assert count(prod_run, "aws:lb/listener:Listener") == 2  # HTTPS + HTTP->HTTPS redirect
    assert count(prod_run, "aws:cloudwatch/logGroup:LogGroup") == 4
    assert count(prod_run, "aws:iam/role:Role") == 7
    assert count(prod_run, "aws:cloudwatch/dashboard:Dashboard") == 1
    assert count(prod_run, subscription) == 1
    assert count(prod_run, ALARM) == count(dev_run, ALARM)  # same alarms, same node count
    worker = prod_run.one(SERVICE, "-worker-").inputs
    assert worker["capacityProviderStrategies"] == [
        {"capacityProvider": "FARGATE_SPOT", "weight": 1}
    ]
    (task,) = [t for t in prod_run.of_type(TASK_DEF) if "-worker-" in t.name]
    assert task.inputs["runtimePlatform"]["cpuArchitecture"] == "ARM64"


def test_tasks_run_in_private_subnets_without_public_ips(any_run: ProgramRun) -> None:
    private_ids = {
        s.resource_id for s in any_run.of_type("aws:ec2/subnet:Subnet") if "-private-" in s.name
    }
    for service in any_run.of_type(SERVICE):
        network = service.inputs["networkConfiguration"]
        assert network["assignPublicIp"] is False
        assert set(network["subnets"]) == private_ids


# --- network security -------------------------------------------------------------------------


def test_only_an_internet_facing_alb_accepts_traffic_from_anywhere(any_run: ProgramRun) -> None:
    """With a certificate (prod) the ALB is public on 80 (redirect) and 443; without one (dev)
    it is internal and accepts only the VPC's range: no API key crosses the internet in clear."""
    alb_sg = any_run.one("aws:ec2/securityGroup:SecurityGroup", "-alb")
    alb = any_run.one("aws:lb/loadBalancer:LoadBalancer").inputs
    alb_rules = [
        r for r in any_run.of_type(SG_INGRESS) if r.inputs["securityGroupId"] == alb_sg.resource_id
    ]
    open_rules = [
        r
        for r in any_run.of_type(SG_INGRESS)
        if r.inputs.get("cidrIpv4") in ANYWHERE or r.inputs.get("cidrIpv6") in ANYWHERE
    ]
    public = {
        s.resource_id for s in any_run.of_type("aws:ec2/subnet:Subnet") if "-public-" in s.name
    }
    private = {
        s.resource_id for s in any_run.of_type("aws:ec2/subnet:Subnet") if "-private-" in s.name
    }
    if any_run.stack == "prod":
        assert alb["internal"] is False
        assert set(alb["subnets"]) == public
        assert {r.inputs["securityGroupId"] for r in open_rules} == {alb_sg.resource_id}
        assert {r.inputs["fromPort"] for r in open_rules} == {80, 443}
    else:
        assert alb["internal"] is True
        assert set(alb["subnets"]) == private
        assert open_rules == []
        assert {r.inputs["cidrIpv4"] for r in alb_rules} == {"10.40.0.0/16"}
        assert {r.inputs["fromPort"] for r in alb_rules} == {80}
        assert any_run.exports["apiInternal"] is True
    for sg in any_run.of_type("aws:ec2/securityGroup:SecurityGroup"):
        assert not sg.inputs.get("ingress"), "inline rules would bypass this check"
        assert not sg.inputs.get("egress"), "inline rules would bypass the egress checks"


def test_plain_http_on_the_internet_only_when_asked_for_by_name() -> None:
    run = run_program({**dev_config(), "jobqueue:allowPublicPlainHttp": "true"}, stack="demo")
    alb = run.one("aws:lb/loadBalancer:LoadBalancer").inputs
    assert alb["internal"] is False
    (listener,) = run.of_type("aws:lb/listener:Listener")
    assert listener.inputs["protocol"] == "HTTP"
    assert {
        r.inputs["cidrIpv4"] for r in run.of_type(SG_INGRESS) if r.inputs.get("fromPort") == 80
    } == {"0.0.0.0/0"}
    assert run.exports["apiUrl"].startswith("http://")


def test_https_listener_and_redirect_when_a_certificate_is_configured(prod_run: ProgramRun) -> None:
    listeners = {r.inputs["port"]: r.inputs for r in prod_run.of_type("aws:lb/listener:Listener")}
    assert listeners[443]["protocol"] == "HTTPS"
    assert listeners[443]["certificateArn"] == prod_run.config["jobqueue:certificateArn"]
    assert listeners[443]["sslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    redirect = listeners[80]["defaultActions"][0]
    assert redirect["type"] == "redirect"
    assert redirect["redirect"]["protocol"] == "HTTPS"
    assert prod_run.exports["apiUrl"].startswith("https://")


def test_redis_is_reachable_only_from_the_task_security_groups(any_run: ProgramRun) -> None:
    group = any_run.one("aws:elasticache/replicationGroup:ReplicationGroup")
    (cache_sg_id,) = group.inputs["securityGroupIds"]
    rules = [r for r in any_run.of_type(SG_INGRESS) if r.inputs["securityGroupId"] == cache_sg_id]
    task_sgs = {
        any_run.one("aws:ec2/securityGroup:SecurityGroup", f"-{role}").resource_id
        for role in ("api", "worker", "metrics")
    }
    assert {r.inputs.get("referencedSecurityGroupId") for r in rules} == task_sgs
    for rule in rules:
        assert "cidrIpv4" not in rule.inputs
        assert "cidrIpv6" not in rule.inputs
        assert rule.inputs["fromPort"] == rule.inputs["toPort"] == 6379


# --- cache ------------------------------------------------------------------------------------


def test_cache_is_multi_az_valkey_with_tls_encryption_and_auth(any_run: ProgramRun) -> None:
    rg = any_run.one("aws:elasticache/replicationGroup:ReplicationGroup").inputs
    assert rg["engine"] == "valkey"
    assert rg["transitEncryptionEnabled"] is True
    assert rg["atRestEncryptionEnabled"] is True
    assert rg["automaticFailoverEnabled"] is True
    assert rg["multiAzEnabled"] is True
    assert rg["numCacheClusters"] == 2
    assert rg["clusterMode"] == "disabled"
    assert secret_value(rg["authToken"]).startswith(SECRET_SENTINEL)
    assert rg["authTokenUpdateStrategy"] in ("SET", "ROTATE")


def test_cache_keeps_job_hashes_compact(any_run: ProgramRun) -> None:
    rg = any_run.one("aws:elasticache/replicationGroup:ReplicationGroup").inputs
    group = any_run.one("aws:elasticache/parameterGroup:ParameterGroup")
    assert rg["parameterGroupName"] == group.state["name"]
    major = any_run.settings.cache.engine_version.split(".")[0]
    assert group.inputs["family"] == f"valkey{major}"
    parameters = {p["name"]: p["value"] for p in group.inputs["parameters"]}
    assert parameters == {"hash-max-listpack-value": "1024", "maxmemory-policy": "noeviction"}


def test_auth_token_is_stored_in_secrets_manager(dev_run: ProgramRun) -> None:
    token = dev_run.one("random:index/randomPassword:RandomPassword", "auth-token")
    version = dev_run.one("aws:secretsmanager/secretVersion:SecretVersion", "auth-token")
    assert secret_value(version.inputs["secretString"]) == token.state["result"]


def test_cluster_mode_option_shards_the_group() -> None:
    run = run_program(
        {**dev_config(), "jobqueue:cacheClusterMode": "true", "jobqueue:cacheShards": "2"},
        stack="sharded",
    )
    rg = run.one("aws:elasticache/replicationGroup:ReplicationGroup").inputs
    assert rg["clusterMode"] == "enabled"
    assert rg["numNodeGroups"] == 2
    assert rg["replicasPerNodeGroup"] == 1
    assert "numCacheClusters" not in rg
    group = run.one("aws:elasticache/parameterGroup:ParameterGroup").inputs
    parameters = {p["name"]: p["value"] for p in group["parameters"]}
    assert parameters == {
        "hash-max-listpack-value": "1024",
        "maxmemory-policy": "noeviction",
        "cluster-enabled": "yes",
    }
    assert run.exports["cacheEndpoint"].startswith("clustercfg.")
    memory_alarms = [a for a in run.of_type(ALARM) if "redis-memory" in a.name]
    assert len(memory_alarms) == 4  # 2 shards x (primary + replica)
    for role in ("api", "worker", "metrics"):  # the service must follow the queue's slot
        env = {e["name"]: e["value"] for e in run.container(role)["environment"]}
        assert env["REDIS_CLUSTER"] == "true"
        assert env["REDIS_HOST"] == run.exports["cacheEndpoint"]


# --- registry ---------------------------------------------------------------------------------


def test_each_image_repository_scans_on_push_and_expires_old_images(any_run: ProgramRun) -> None:
    repos = any_run.of_type("aws:ecr/repository:Repository")
    assert sorted(r.inputs["name"] for r in repos) == [
        f"{any_run.prefix}-{role}" for role in ("api", "metrics", "worker")
    ]
    for repo in repos:
        assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repo.inputs["imageTagMutability"] == "IMMUTABLE"
    policies = {
        p.inputs["repository"]: json.loads(p.inputs["policy"])
        for p in any_run.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy")
    }
    assert set(policies) == {r.inputs["name"] for r in repos}
    keep = any_run.settings.ecr_keep_images
    for policy in policies.values():
        rules = sorted(policy["rules"], key=lambda r: r["rulePriority"])
        assert rules[0]["selection"]["tagStatus"] == "untagged"
        # ECR requires the "any" rule to come last (highest rulePriority).
        assert rules[-1]["selection"] == {
            "tagStatus": "any",
            "countType": "imageCountMoreThan",
            "countNumber": keep,
        }
        assert all(r["action"] == {"type": "expire"} for r in rules)


# --- secrets ----------------------------------------------------------------------------------


def test_secrets_reach_containers_only_through_ecs_secrets(any_run: ProgramRun) -> None:
    secret_arns = {s.state["arn"] for s in any_run.of_type("aws:secretsmanager/secret:Secret")}
    for role in ("api", "worker", "metrics"):
        container = any_run.container(role)
        env_names = {e["name"] for e in container["environment"]}
        assert not env_names & {"REDIS_PASSWORD", "API_KEYS"}
        secrets = {s["name"]: s["valueFrom"] for s in container["secrets"]}
        assert secrets["REDIS_PASSWORD"] in secret_arns
        assert set(secrets.values()) <= secret_arns
        assert SECRET_SENTINEL not in json.dumps(container)
    assert "API_KEYS" in {s["name"] for s in any_run.container("api")["secrets"]}
    assert "API_KEYS" not in {s["name"] for s in any_run.container("worker")["secrets"]}


def test_no_secret_value_appears_in_stack_outputs(any_run: ProgramRun) -> None:
    assert SECRET_SENTINEL not in json.dumps(any_run.exports)
    assert set(any_run.exports) >= {"apiUrl", "dashboardUrl", "repositoryUrls", "cacheEndpoint"}


def test_containers_get_the_settings_the_service_reads(dev_run: ProgramRun) -> None:
    env = {e["name"]: e["value"] for e in dev_run.container("worker")["environment"]}
    assert env["REDIS_TLS"] == "true"
    assert env["REDIS_CLUSTER"] == "false"
    assert env["ENVIRONMENT"] == "dev"
    assert env["REDIS_HOST"] == dev_run.exports["cacheEndpoint"]
    worker = dev_run.settings.worker
    assert env["WORKER_COUNT"] == str(worker.count) == "2"
    assert env["WORKER_CONCURRENCY"] == str(worker.concurrency) == "10"
    assert env["SHUTDOWN_GRACE_SECONDS"] == f"{worker.shutdown_grace_seconds:g}" == "90"
    assert env["TASK_PROTECTION_MINUTES"] == str(worker.protection_minutes) == "15"
    assert env["ARTIFACT_BUCKET"] == dev_run.exports["artifactBucket"]
    assert env["EMAIL_BACKEND"] == "ses"
    metrics_env = {e["name"]: e["value"] for e in dev_run.container("metrics")["environment"]}
    assert metrics_env["CLOUDWATCH_ENABLED"] == "true"
    assert metrics_env["CANARY_ENABLED"] == "true"


# --- IAM --------------------------------------------------------------------------------------


def _statements(run: ProgramRun) -> list[tuple[str, dict[str, Any]]]:
    return [(name, s) for name, doc in run.policies() for s in doc["Statement"]]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_no_iam_statement_allows_every_action(any_run: ProgramRun) -> None:
    for name, stmt in _statements(any_run):
        for action in _as_list(stmt["Action"]):
            assert action != "*", (name, stmt)
            assert not action.endswith(":*"), (name, stmt)


def test_resource_star_only_where_aws_cannot_scope(any_run: ProgramRun) -> None:
    for name, stmt in _statements(any_run):
        if "*" not in _as_list(stmt.get("Resource", [])):
            continue
        assert set(_as_list(stmt["Action"])) <= UNSCOPABLE_ACTIONS, (name, stmt)


def test_put_metric_data_is_conditioned_on_the_contract_namespace(any_run: ProgramRun) -> None:
    found = [
        (name, s)
        for name, s in _statements(any_run)
        if "cloudwatch:PutMetricData" in _as_list(s["Action"])
    ]
    assert [name for name, _ in found] == [f"{any_run.prefix}-metrics-task"]
    assert found[0][1]["Condition"] == {"StringEquals": {"cloudwatch:namespace": NAMESPACE}}


def test_s3_access_is_limited_to_the_artifact_bucket(any_run: ProgramRun) -> None:
    bucket_arn = any_run.one("aws:s3/bucket:Bucket", f"{any_run.prefix}-bucket").state["arn"]
    for _name, stmt in _statements(any_run):
        if any(a.startswith("s3:") for a in _as_list(stmt["Action"])):
            assert all(r in (bucket_arn, f"{bucket_arn}/*") for r in _as_list(stmt["Resource"]))


def _task_role_grants(run: ProgramRun) -> dict[str, set[tuple[str, str]]]:
    """role -> {(action, resource)} of its task role: what the running code may do."""
    grants: dict[str, set[tuple[str, str]]] = {}
    for name, stmt in _statements(run):
        role = name.removeprefix(f"{run.prefix}-").removesuffix("-task")
        if name.endswith("-task") and "Resource" in stmt:  # not the trust policy
            for action in _as_list(stmt["Action"]):
                grants.setdefault(role, set()).update(
                    (action, r) for r in _as_list(stmt["Resource"])
                )
    return grants


def test_task_roles_grant_exactly_what_the_service_calls(any_run: ProgramRun) -> None:
    """API: artifact downloads; workers: artifacts, SES SendRawEmail, task protection; metrics:
    PutMetricData. ListBucket makes a missing artifact a 404, not an AccessDenied 5xx."""
    bucket = any_run.one("aws:s3/bucket:Bucket", f"{any_run.prefix}-bucket").state["arn"]
    objects = f"{bucket}/*"
    # The sender's identity and, in the SES sandbox, each recipient's: the account's identities,
    # fenced by the sender address (a separate test); no sender configured, no SES at all.
    identities = "arn:aws:ses:us-east-1:123456789012:identity/*"
    ses = {("ses:SendRawEmail", identities)} if any_run.settings.email.sender else set()
    tasks = f"arn:aws:ecs:us-east-1:123456789012:task/{any_run.prefix}-cluster/*"
    assert _task_role_grants(any_run) == {
        "api": {("s3:GetObject", objects), ("s3:ListBucket", bucket)},
        "worker": {
            ("s3:GetObject", objects),
            ("s3:PutObject", objects),
            ("s3:ListBucket", bucket),
            ("ecs:UpdateTaskProtection", tasks),
            *ses,
        },
        "metrics": {("cloudwatch:PutMetricData", "*")},
    }


def test_each_execution_role_reads_only_its_own_secrets(any_run: ProgramRun) -> None:
    secrets = {s.name: s.state["arn"] for s in any_run.of_type("aws:secretsmanager/secret:Secret")}
    readable = {
        name: set(_as_list(s["Resource"]))
        for name, s in _statements(any_run)
        if "secretsmanager:GetSecretValue" in _as_list(s["Action"])
    }
    p = any_run.prefix
    api_keys = secrets[f"{p}-api-keys"]
    assert readable[f"{p}-api-execution"] == set(secrets.values())
    assert api_keys not in readable[f"{p}-worker-execution"]
    assert api_keys not in readable[f"{p}-metrics-execution"]
    assert not any("task" in name for name in readable), "task roles never read secrets"


def test_only_worker_tasks_may_set_their_scale_in_protection(any_run: ProgramRun) -> None:
    holders = [
        (name, s)
        for name, s in _statements(any_run)
        if "ecs:UpdateTaskProtection" in _as_list(s["Action"])
    ]
    assert [name for name, _ in holders] == [f"{any_run.prefix}-worker-task"]
    (resource,) = _as_list(holders[0][1]["Resource"])
    assert resource.startswith(f"arn:aws:ecs:us-east-1:123456789012:task/{any_run.prefix}-cluster/")


def test_log_groups_have_retention(any_run: ProgramRun) -> None:
    settings = any_run.settings
    for group in any_run.of_type("aws:cloudwatch/logGroup:LogGroup"):
        expected = (
            settings.network.flow_log_retention_days
            if "flow-logs" in group.name
            else settings.log_retention_days
        )
        assert group.inputs["retentionInDays"] == expected, group.name
    assert any_run.config.get("jobqueue:logRetentionDays", "30") == str(settings.log_retention_days)


def test_artifact_bucket_is_private_and_encrypted(any_run: ProgramRun) -> None:
    buckets = {b.resource_id for b in any_run.of_type("aws:s3/bucket:Bucket")}
    blocks = any_run.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert {b.inputs["bucket"] for b in blocks} == buckets
    for block in blocks:
        assert all(
            block.inputs[k]
            for k in (
                "blockPublicAcls",
                "blockPublicPolicy",
                "ignorePublicAcls",
                "restrictPublicBuckets",
            )
        )
    sses = any_run.of_type(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    assert {s.inputs["bucket"] for s in sses} == buckets
    for sse in sses:
        rule = sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]
        assert rule["sseAlgorithm"] in ("AES256", "aws:kms")


# --- services ---------------------------------------------------------------------------------


def test_api_sits_behind_the_alb_with_readyz_health_check(dev_run: ProgramRun) -> None:
    tg = dev_run.one("aws:lb/targetGroup:TargetGroup").inputs
    assert tg["healthCheck"]["path"] == "/readyz"
    assert tg["targetType"] == "ip"
    assert tg["deregistrationDelay"] <= 30
    api = dev_run.one(SERVICE, "-api-")
    assert api.inputs["loadBalancers"][0]["containerPort"] == 8000


def test_every_service_rolls_back_a_failed_deployment(any_run: ProgramRun) -> None:
    for service in any_run.of_type(SERVICE):
        assert service.inputs["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}


def test_worker_stop_timeout_leaves_room_for_the_grace(any_run: ProgramRun) -> None:
    worker = any_run.container("worker")
    grace = any_run.settings.worker.shutdown_grace_seconds
    assert worker["stopTimeout"] == 120
    assert grace <= worker["stopTimeout"] - 15


def test_grace_too_long_for_stop_timeout_fails_with_a_clear_message() -> None:
    message = r"jobqueue:shutdownGraceSeconds = '110' is not valid: it must be a number in 0\.\.105"
    with pytest.raises(Exception, match=message):
        run_program({**dev_config(), "jobqueue:shutdownGraceSeconds": "110"}, stack="badgrace")


def test_api_scales_on_cpu_and_requests(dev_run: ProgramRun) -> None:
    policies = [p for p in dev_run.of_type(POLICY) if "-api-" in p.name]
    kinds = {
        p.inputs["targetTrackingScalingPolicyConfiguration"]["predefinedMetricSpecification"][
            "predefinedMetricType"
        ]
        for p in policies
    }
    assert kinds == {"ECSServiceAverageCPUUtilization", "ALBRequestCountPerTarget"}


def test_autoscaled_services_ignore_desired_count_after_creation(any_run: ProgramRun) -> None:
    """Read from each resource's options (recorded by the harness's transformation)."""
    for role in ("api", "worker"):
        service = any_run.one(SERVICE, f"-{role}-")
        assert service.ignore_changes == ["desired_count"], service.name
    # The metrics task's one task is not autoscaled: its count stays what the program says.
    assert any_run.one(SERVICE, "-metrics-").ignore_changes == []
    # A rotated API key is never reverted by `pulumi up`.
    version = any_run.one("aws:secretsmanager/secretVersion:SecretVersion", "api-keys")
    assert version.ignore_changes == ["secret_string"]


def test_worker_scaling_bounds_come_from_config(any_run: ProgramRun) -> None:
    target = any_run.one("aws:appautoscaling/target:Target", "-worker-")
    plan = any_run.settings.worker.scaling
    assert target.inputs["minCapacity"] == plan.min_tasks
    assert target.inputs["maxCapacity"] == plan.max_tasks
    assert (plan.min_tasks, plan.max_tasks) == {"dev": (1, 4), "prod": (1, 50)}[any_run.stack]


def test_worker_backlog_target_is_acceptable_wait_times_task_throughput(
    dev_run: ProgramRun,
) -> None:
    """Dev defaults: 20 slots (2 processes x 10) + 60 s acceptable wait x (20 jobs / 10 s)."""
    policy = dev_run.one(POLICY, "-worker-backlog")
    config = policy.inputs["targetTrackingScalingPolicyConfiguration"]
    assert config["targetValue"] == pytest.approx(20 + 60 * 2 * 10 / 10)
    assert config["scaleOutCooldown"] == 120
    assert config["scaleInCooldown"] == 300
    (query,) = config["customizedMetricSpecification"]["metrics"]
    assert query["metricStat"]["metric"]["metricName"] == "BacklogPerTask"
    assert query["metricStat"]["stat"] == "Average"
    assert query["returnData"] is True


def test_a_measured_task_throughput_sets_the_backlog_target() -> None:
    run = run_program(
        {**dev_config(), "jobqueue:taskJobsPerSecond": "5", "jobqueue:acceptableWaitSeconds": "30"},
        stack="measured",
    )
    config = run.one(POLICY, "-worker-backlog").inputs["targetTrackingScalingPolicyConfiguration"]
    assert config["targetValue"] == pytest.approx(20 + 30 * 5)


def test_workers_scale_from_zero_on_pending_jobs(dev_run: ProgramRun) -> None:
    step = dev_run.one(POLICY, "-worker-from-zero")
    assert step.inputs["policyType"] == "StepScaling"
    adjustments = step.inputs["stepScalingPolicyConfiguration"]["stepAdjustments"]
    assert adjustments == [{"metricIntervalLowerBound": "0", "scalingAdjustment": 1}]
    alarm = dev_run.one(ALARM, "depth-without-workers").inputs
    assert alarm["alarmActions"] == [step.state["arn"]]
    expression = next(q["expression"] for q in alarm["metricQueries"] if q.get("expression"))
    assert "depth > 0" in expression


def test_canary_with_workers_able_to_reach_zero_is_refused() -> None:
    with pytest.raises(Exception, match="workerMinCount = 0 is not valid while canaryEnabled"):
        run_program(
            {**dev_config(), "jobqueue:workerMinCount": "0", "jobqueue:canaryEnabled": "true"},
            stack="coldcanary",
        )


def test_without_the_canary_workers_may_scale_to_zero() -> None:
    run = run_program(
        {**dev_config(), "jobqueue:workerMinCount": "0", "jobqueue:canaryEnabled": "false"},
        stack="tozero",
    )
    assert run.one("aws:appautoscaling/target:Target", "-worker-").inputs["minCapacity"] == 0
    assert run.one(SERVICE, "-worker-").inputs["desiredCount"] == 0
    assert run.one(POLICY, "-worker-from-zero").inputs["policyType"] == "StepScaling"
    assert not [a for a in run.of_type(ALARM) if "canary" in a.name]
    env = {e["name"]: e["value"] for e in run.container("metrics")["environment"]}
    assert env["CANARY_ENABLED"] == "false"


def test_the_worker_accepts_its_container_settings_and_stops_in_time(any_run: ProgramRun) -> None:
    """The service's own Settings validate the worker's environment (SHUTDOWN_GRACE_SECONDS
    included), and grace + taskiq's broker shutdown end before ECS's SIGKILL."""
    from service.settings import FARGATE_MAX_STOP_TIMEOUT_SECONDS, Settings
    from service.worker import BROKER_SHUTDOWN_SECONDS

    container = any_run.container("worker")
    env = {e["name"].lower(): e["value"] for e in container["environment"]}
    settings = Settings(_env_file=None, **env, redis_password="from-ecs-secrets")
    assert settings.environment == any_run.stack
    assert settings.redis_tls is True
    assert container["stopTimeout"] == FARGATE_MAX_STOP_TIMEOUT_SECONDS
    assert settings.shutdown_grace_seconds + BROKER_SHUTDOWN_SECONDS < container["stopTimeout"]


def test_metrics_task_is_a_single_non_overlapping_service(dev_run: ProgramRun) -> None:
    service = dev_run.one(SERVICE, "-metrics-").inputs
    assert service["desiredCount"] == 1
    assert service["deploymentMaximumPercent"] == 100


# --- the metric contract ----------------------------------------------------------------------


def _contract_refs(run: ProgramRun) -> list[tuple[str, str, dict[str, str]]]:
    """(where, metric name, dimensions) of every JobQueue metric the infra reads."""
    refs: list[tuple[str, str, dict[str, str]]] = []
    for alarm in run.of_type(ALARM):
        a = alarm.inputs
        if a.get("namespace") == NAMESPACE:
            refs.append((alarm.name, a["metricName"], a["dimensions"]))
        for q in a.get("metricQueries", []):
            m = q.get("metric")
            if m and m["namespace"] == NAMESPACE:
                refs.append((alarm.name, m["metricName"], m["dimensions"]))
    for policy in run.of_type(POLICY):
        spec = policy.inputs.get("targetTrackingScalingPolicyConfiguration", {})
        for q in spec.get("customizedMetricSpecification", {}).get("metrics", []):
            m = q["metricStat"]["metric"]
            dims = {d["name"]: d["value"] for d in m["dimensions"]}
            refs.append((policy.name, m["metricName"], dims))
    body = json.loads(run.one("aws:cloudwatch/dashboard:Dashboard").inputs["dashboardBody"])
    for widget in body["widgets"]:
        for row in widget["properties"]["metrics"]:
            if row[0] == NAMESPACE:
                pairs = [x for x in row[2:] if not isinstance(x, dict)]
                refs.append(
                    (
                        widget["properties"]["title"],
                        row[1],
                        dict(zip(pairs[::2], pairs[1::2], strict=True)),
                    )
                )
    return refs


def test_every_queue_metric_used_is_one_the_metrics_task_publishes(any_run: ProgramRun) -> None:
    refs = _contract_refs(any_run)
    assert len(refs) > 15
    queue, env = any_run.settings.queue_name, any_run.settings.environment
    assert (queue, env) == ("default", any_run.stack)
    for where, name, dims in refs:
        assert name in METRICS_BY_NAME, f"{where} reads {name}, which nobody publishes"
        spec = METRICS_BY_NAME[name]
        assert set(dims) == {d.value for d in spec.dimensions}, (where, name, dims)
        assert dims["Queue"] == queue, (where, dims)
        assert dims["Environment"] == env, (where, dims)


def test_alarms_read_queue_metrics_at_the_period_they_are_published(any_run: ProgramRun) -> None:
    """A period shorter than the publishing period would see empty windows (and alarms that
    treat missing data as breaching would page); a longer one must be a whole multiple."""
    env = {e["name"]: e["value"] for e in any_run.container("metrics")["environment"]}
    published = int(env["METRICS_PERIOD_SECONDS"])
    assert published == 60  # target tracking evaluates one-minute periods
    periods = []
    for alarm in any_run.of_type(ALARM):
        a = alarm.inputs
        if a.get("namespace") == NAMESPACE:
            periods.append(a["period"])
        periods += [
            q["metric"]["period"]
            for q in a.get("metricQueries", [])
            if q.get("metric") and q["metric"]["namespace"] == NAMESPACE
        ]
    assert len(periods) > 5
    assert all(p % published == 0 for p in periods), periods
    body = json.loads(any_run.one("aws:cloudwatch/dashboard:Dashboard").inputs["dashboardBody"])
    assert {w["properties"]["period"] for w in body["widgets"]} == {published}


def test_alarms_cover_the_on_call_list_and_notify_sns(any_run: ProgramRun) -> None:
    topic = any_run.one("aws:sns/topic:Topic").state["arn"]
    alarms = {
        a.name.removeprefix(f"jobqueue-{a.name.split('-')[1]}-"): a for a in any_run.of_type(ALARM)
    }
    for wanted in (
        "oldest-pending-age",
        "failure-rate",
        "no-workers",
        "api-5xx",
        "redis-memory-1",
        "redis-memory-2",
        "canary-latency",
    ):
        assert wanted in alarms, wanted
        assert alarms[wanted].inputs["alarmActions"] == [topic]


def test_alert_email_subscribes_to_the_topic(prod_run: ProgramRun) -> None:
    sub = prod_run.one("aws:sns/topicSubscription:TopicSubscription").inputs
    assert sub["protocol"] == "email"
    assert sub["endpoint"] == prod_run.config["jobqueue:alertEmail"]


def test_dashboard_body_follows_the_cloudwatch_widget_structure(any_run: ProgramRun) -> None:
    body = json.loads(any_run.one("aws:cloudwatch/dashboard:Dashboard").inputs["dashboardBody"])
    assert set(body) == {"widgets"}
    titles = []
    for widget in body["widgets"]:
        assert widget["type"] == "metric"
        for key in ("x", "y", "width", "height"):
            assert isinstance(widget[key], int)
        assert widget["x"] >= 0
        assert widget["x"] + widget["width"] <= 24
        props = widget["properties"]
        assert props["region"] == "us-east-1"
        assert props["view"] in ("timeSeries", "singleValue", "bar", "pie", "gauge")
        for row in props["metrics"]:
            assert isinstance(row, list)
            assert len(row) >= 2
            labels = [x for x in row if not isinstance(x, dict)]
            assert len(labels) % 2 == 0, "namespace, name, then dimension name/value pairs"
            assert all(isinstance(x, dict) for x in row[len(labels) :])
        titles.append(props["title"].lower())
    joined = " | ".join(titles)
    for topic in (
        "priority",
        "backlog",
        "oldest",
        "completed",
        "workers",
        "5xx",
        "latency",
        "redis engine cpu",
        "redis memory",
    ):
        assert topic in joined, topic


# --- project ---------------------------------------------------------------------------------


def test_pulumi_project_points_at_the_program() -> None:
    import yaml

    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "jobqueue"
    assert project["main"] == "infra/"
    assert project["runtime"]["name"] == "python"
    assert project["runtime"]["options"]["toolchain"] == "uv"
