"""Issue 18's points, proved on the resources' inputs under mocks.

`fresh_run` is a stack with only aws:region set, `dev_run` the committed dev stack, `prod_run`
a prod-like stack deploying a CI-built tag over HTTPS.
"""

from __future__ import annotations

import json
from typing import Any

from pulumi_harness import ROOT, SECRET_SENTINEL, ProgramRun, dev_config, run_program

from infra.components.images import source_digest

SERVICE = "aws:ecs/service:Service"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
IMAGE = "docker-build:index:Image"
SG_EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"


def alarm(run: ProgramRun, suffix: str) -> dict[str, Any]:
    return run.one(ALARM, f"{run.prefix}-{suffix}").inputs


# --- one command on an empty stack ------------------------------------------------------------


def test_a_stack_with_only_the_region_builds_the_whole_graph(fresh_run: ProgramRun) -> None:
    kinds = {r.typ for r in fresh_run.resources}
    for wanted in (
        "aws:ec2/vpc:Vpc",
        "aws:elasticache/replicationGroup:ReplicationGroup",
        "aws:ecr/repository:Repository",
        IMAGE,
        "aws:ecs/taskDefinition:TaskDefinition",
        SERVICE,
        "aws:lb/loadBalancer:LoadBalancer",
        "aws:cloudwatch/dashboard:Dashboard",
        "aws:ec2/flowLog:FlowLog",
        "jobqueue:infra:AccessLogs",
    ):
        assert wanted in kinds, wanted
    assert len(fresh_run.of_type(SERVICE)) == 3
    assert fresh_run.exports["apiUrl"].startswith("http://")
    assert fresh_run.exports["apiInternal"] is True  # no certificate: internal


def test_images_are_built_and_pushed_to_their_repository_with_ecr_credentials(
    fresh_run: ProgramRun,
) -> None:
    repos = {
        r.inputs["name"].rsplit("-", 1)[1]: r.state["repositoryUrl"]
        for r in fresh_run.of_type("aws:ecr/repository:Repository")
    }
    images = {i.inputs["target"]: i for i in fresh_run.of_type(IMAGE)}
    assert set(images) == {"api", "worker", "metrics"}
    tag = f"src-{source_digest()}"
    tokens = [a for t, a in fresh_run.invokes if t.startswith("aws:ecr/getAuthorizationToken")]
    assert tokens
    assert all(a["registryId"] == "123456789012" for a in tokens)
    for role, image in images.items():
        i = image.inputs
        assert i["push"] is True
        assert i["tags"] == [f"{repos[role]}:{tag}"]
        assert i["platforms"] == ["linux/amd64"]
        assert i["dockerfile"]["location"].endswith("images/Dockerfile")
        # The registry credentials reach the engine as a secret, never in clear state.
        assert SECRET_SIG_KEY in i["registries"]
        (registry,) = i["registries"]["value"]
        assert registry["address"] == repos[role].split("/")[0]
        assert registry["username"] == "AWS"
        assert registry["password"] == SECRET_SENTINEL + "ecr-password"
        # Tasks run the pushed digest, not a tag that could be re-pointed.
        assert fresh_run.container(role)["image"] == image.state["ref"]
        assert "@sha256:" in image.state["ref"]


def test_an_image_tag_skips_the_build_and_deploys_that_tag(prod_run: ProgramRun) -> None:
    assert prod_run.of_type(IMAGE) == []
    for role in ("api", "worker", "metrics"):
        image = prod_run.container(role)["image"]
        assert image.endswith(f"/jobqueue-prod-{role}:git-0123abc")
    assert not [t for t, _ in prod_run.invokes if "getAuthorizationToken" in t]


def test_arm64_stacks_build_arm64_images() -> None:
    run = run_program({**dev_config(), "jobqueue:cpuArchitecture": "ARM64"}, stack="graviton")
    assert {tuple(i.inputs["platforms"]) for i in run.of_type(IMAGE)} == {("linux/arm64",)}


# --- job modules, email -----------------------------------------------------------------------


def _env(run: ProgramRun, role: str) -> dict[str, str]:
    return {e["name"]: e["value"] for e in run.container(role)["environment"]}


def test_job_modules_reach_the_api_workers_and_metrics_task(prod_run: ProgramRun) -> None:
    for role in ("api", "worker", "metrics"):
        assert _env(prod_run, role)["JOB_MODULES"] == "acme_jobs.billing,acme_jobs.reports"


def test_without_a_sender_email_has_no_permission_and_nothing_else_changes(
    dev_run: ProgramRun,
) -> None:
    env = _env(dev_run, "worker")
    assert "EMAIL_FROM" not in env
    assert env["EMAIL_BACKEND"] == "ses"
    actions = {
        a for _, doc in dev_run.policies() for st in doc["Statement"] for a in _list(st["Action"])
    }
    assert not {a for a in actions if a.startswith("ses:")}


def test_ses_covers_recipient_identities_fenced_by_the_sender(prod_run: ProgramRun) -> None:
    (statement,) = [
        st
        for _, doc in prod_run.policies()
        for st in doc["Statement"]
        if "ses:SendRawEmail" in _list(st["Action"])
    ]
    assert statement["Resource"] == ["arn:aws:ses:us-east-1:123456789012:identity/*"]
    assert statement["Condition"] == {"StringEquals": {"ses:FromAddress": "jobs@example.com"}}
    assert _env(prod_run, "worker")["EMAIL_FROM"] == "jobs@example.com"


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- safe edge --------------------------------------------------------------------------------


def test_tls_listener_uses_a_tls12_plus_policy_and_port_80_only_redirects(
    prod_run: ProgramRun,
) -> None:
    listeners = {r.inputs["port"]: r.inputs for r in prod_run.of_type("aws:lb/listener:Listener")}
    assert set(listeners) == {80, 443}
    assert listeners[443]["sslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    (action,) = listeners[80]["defaultActions"]
    assert action["type"] == "redirect"
    assert action["redirect"] == {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}


def test_alb_access_logs_go_to_a_private_bucket_elb_may_write(prod_run: ProgramRun) -> None:
    lb = prod_run.one("aws:lb/loadBalancer:LoadBalancer").inputs
    bucket = prod_run.one("aws:s3/bucket:Bucket", "alb-logs")
    assert lb["accessLogs"] == {"bucket": bucket.state["bucket"], "prefix": "alb", "enabled": True}
    policy = json.loads(
        prod_run.one("aws:s3/bucketPolicy:BucketPolicy", "alb-logs").inputs["policy"]
    )
    delivery = next(s for s in policy["Statement"] if s["Sid"] == "ElbLogDelivery")
    assert delivery["Principal"] == {"AWS": "arn:aws:iam::127311923021:root"}  # us-east-1's ELB
    assert delivery["Action"] == "s3:PutObject"
    assert delivery["Resource"].endswith("/alb/AWSLogs/123456789012/*")


def test_dev_keeps_no_access_logs(dev_run: ProgramRun) -> None:
    assert "accessLogs" not in dev_run.one("aws:lb/loadBalancer:LoadBalancer").inputs


# --- queue data is never evicted --------------------------------------------------------------


def test_cache_never_evicts_notifies_and_keeps_a_final_snapshot(any_run: ProgramRun) -> None:
    group = any_run.one("aws:elasticache/parameterGroup:ParameterGroup").inputs
    assert {"name": "maxmemory-policy", "value": "noeviction"} in group["parameters"]
    rg = any_run.one("aws:elasticache/replicationGroup:ReplicationGroup").inputs
    assert rg["notificationTopicArn"] == any_run.one("aws:sns/topic:Topic").state["arn"]
    assert rg["finalSnapshotIdentifier"] == f"{any_run.prefix}-final"
    assert rg["snapshotRetentionLimit"] == {"dev": 1, "prod": 7}[any_run.stack]


def test_no_snapshots_means_no_final_snapshot() -> None:
    run = run_program({**dev_config(), "jobqueue:cacheSnapshotRetentionDays": "0"}, stack="nosnap")
    rg = run.one("aws:elasticache/replicationGroup:ReplicationGroup").inputs
    assert "finalSnapshotIdentifier" not in rg


def test_every_cache_node_has_memory_and_eviction_alarms(any_run: ProgramRun) -> None:
    for node in (1, 2):
        memory = alarm(any_run, f"redis-memory-{node}")
        assert memory["metricName"] == "DatabaseMemoryUsagePercentage"
        assert memory["threshold"] == 80
        evictions = alarm(any_run, f"redis-evictions-{node}")
        assert evictions["metricName"] == "Evictions"
        assert evictions["statistic"] == "Sum"
        assert (evictions["comparisonOperator"], evictions["threshold"]) == (
            "GreaterThanThreshold",
            0,
        )
        assert evictions["dimensions"]["CacheClusterId"].endswith(f"-00{node}")


# --- safe deployments -------------------------------------------------------------------------


def test_each_role_has_a_container_health_check_that_checks_something_real(
    any_run: ProgramRun,
) -> None:
    api = any_run.container("api")["healthCheck"]["command"]
    assert api[:3] == ["CMD", "python", "-c"]
    assert "urllib.request.urlopen('http://127.0.0.1:8000/healthz'" in api[3]
    for role in ("worker", "metrics"):
        check = any_run.container(role)["healthCheck"]
        assert check["command"] == ["CMD", "python", "-m", "service.healthcheck", role]
        assert check["retries"] >= 2
        assert check["startPeriod"] >= 30


def test_services_roll_back_on_the_circuit_breaker_and_their_deployment_alarms(
    any_run: ProgramRun,
) -> None:
    p = any_run.prefix
    expected = {
        "api": [f"{p}-api-5xx", f"{p}-api-no-healthy-targets"],
        "worker": [f"{p}-worker-stalled"],
    }
    alarm_names = {a.inputs["name"] for a in any_run.of_type(ALARM) if "name" in a.inputs}
    for role, names in expected.items():
        service = any_run.one(SERVICE, f"-{role}-").inputs
        assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
        assert service["alarms"] == {"alarmNames": names, "enable": True, "rollback": True}
        assert set(names) <= alarm_names  # ECS watches alarms that exist...
        depends = any_run.depends_on[(SERVICE, any_run.one(SERVICE, f"-{role}-").name)]
        assert set(names) <= set(depends)  # ...created before the service


def test_zero_healthy_api_targets_pages(any_run: ProgramRun) -> None:
    a = alarm(any_run, "api-no-healthy-targets")
    assert a["metricName"] == "HealthyHostCount"
    assert set(a["dimensions"]) == {"LoadBalancer", "TargetGroup"}
    assert (a["comparisonOperator"], a["threshold"], a["statistic"]) == (
        "LessThanThreshold",
        1,
        "Minimum",
    )
    assert a["treatMissingData"] == "breaching"
    assert a["alarmActions"] == [any_run.one("aws:sns/topic:Topic").state["arn"]]


def test_stalled_workers_page_and_roll_back_a_worker_deploy(any_run: ProgramRun) -> None:
    a = alarm(any_run, "worker-stalled")
    assert a["metricName"] == "StalledWorkers"
    assert (a["comparisonOperator"], a["threshold"]) == ("GreaterThanThreshold", 0)


def test_a_metrics_deploy_gap_does_not_page(any_run: ProgramRun) -> None:
    """The metrics task's deploy leaves 2-3 silent minutes: only `metrics-silent` judges
    silence, over 10 minutes; the canary needs 3 of 5 breaching minutes and ignores gaps."""
    canary = alarm(any_run, "canary-latency")
    assert canary["treatMissingData"] == "missing"
    assert (canary["datapointsToAlarm"], canary["evaluationPeriods"]) == (3, 5)
    assert alarm(any_run, "oldest-pending-age")["treatMissingData"] == "missing"
    silent = alarm(any_run, "metrics-silent")
    assert silent["treatMissingData"] == "breaching"
    assert silent["evaluationPeriods"] * silent["period"] >= 600
    assert (silent["statistic"], silent["comparisonOperator"]) == (
        "SampleCount",
        "LessThanThreshold",
    )
    breaching = [
        a.name for a in any_run.of_type(ALARM) if a.inputs.get("treatMissingData") == "breaching"
    ]
    assert sorted(breaching) == sorted(
        [f"{any_run.prefix}-metrics-silent", f"{any_run.prefix}-api-no-healthy-targets"]
    )


def test_failed_deployments_notify_the_topic(any_run: ProgramRun) -> None:
    rule = any_run.one("aws:cloudwatch/eventRule:EventRule", "deployment-failed").inputs
    pattern = json.loads(rule["eventPattern"])
    assert pattern["detail-type"] == ["ECS Deployment State Change"]
    assert pattern["detail"] == {"eventName": ["SERVICE_DEPLOYMENT_FAILED"]}
    cluster = any_run.one("aws:ecs/cluster:Cluster").state["name"]
    assert pattern["resources"] == [
        {"prefix": f"arn:aws:ecs:us-east-1:123456789012:service/{cluster}/"}
    ]
    target = any_run.one("aws:cloudwatch/eventTarget:EventTarget").inputs
    topic = any_run.one("aws:sns/topic:Topic").state["arn"]
    assert target["arn"] == topic
    policy = json.loads(any_run.one("aws:sns/topicPolicy:TopicPolicy").inputs["policy"])
    events = next(
        s for s in policy["Statement"] if s["Principal"] == {"Service": "events.amazonaws.com"}
    )
    assert events["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


# --- scaling and protection -------------------------------------------------------------------


def test_worker_deployments_keep_capacity_and_busy_tasks_finish(any_run: ProgramRun) -> None:
    worker = any_run.one(SERVICE, "-worker-").inputs
    assert worker["deploymentMinimumHealthyPercent"] == 100
    assert worker["deploymentMaximumPercent"] == 200
    assert _env(any_run, "worker")["TASK_PROTECTION_MINUTES"] == "15"


# --- network ----------------------------------------------------------------------------------


def test_no_subnet_assigns_public_ips_and_zones_are_standard_zone_ids(any_run: ProgramRun) -> None:
    subnets = any_run.of_type("aws:ec2/subnet:Subnet")
    assert all(s.inputs["mapPublicIpOnLaunch"] is False for s in subnets)
    assert all("availabilityZone" not in s.inputs for s in subnets)
    # Sorted zone IDs, whatever order (and whatever names) the account lists them in.
    expected = ["use1-az1", "use1-az2", "use1-az4"][: any_run.settings.network.az_count]
    assert sorted({s.inputs["availabilityZoneId"] for s in subnets}) == expected
    (zones,) = [a for t, a in any_run.invokes if t.endswith("getAvailabilityZones")]
    assert {"name": "opt-in-status", "values": ["opt-in-not-required"]} in zones["filters"]
    assert zones["state"] == "available"


def test_the_default_security_group_is_managed_with_no_rules(any_run: ProgramRun) -> None:
    default = any_run.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup").inputs
    assert default["vpcId"] == any_run.one("aws:ec2/vpc:Vpc").resource_id
    assert default.get("ingress", []) == []
    assert default.get("egress", []) == []


def test_vpc_flow_logs_go_to_a_log_group_with_retention(any_run: ProgramRun) -> None:
    flow = any_run.one("aws:ec2/flowLog:FlowLog").inputs
    group = any_run.one("aws:cloudwatch/logGroup:LogGroup", "flow-logs")
    assert flow["trafficType"] == "ALL"
    assert flow["logDestinationType"] == "cloud-watch-logs"
    assert flow["logDestination"] == group.state["arn"]
    assert group.inputs["retentionInDays"] == {"dev": 30, "prod": 365}[any_run.stack]


def test_with_tls_port_80_is_closed_unless_a_redirect_is_asked_for(fresh_run: ProgramRun) -> None:
    run = run_program(
        {
            "aws:region": "us-east-1",
            "jobqueue:certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc",
        },
        stack="tls",
    )
    (listener,) = run.of_type("aws:lb/listener:Listener")
    assert (listener.inputs["port"], listener.inputs["protocol"]) == (443, "HTTPS")
    ingress = run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    public = [r.inputs["fromPort"] for r in ingress if r.inputs.get("cidrIpv4") == "0.0.0.0/0"]
    assert public == [443]


def test_flow_logs_can_be_switched_off() -> None:
    run = run_program({**dev_config(), "jobqueue:flowLogs": "false"}, stack="noflow")
    assert run.of_type("aws:ec2/flowLog:FlowLog") == []


def test_task_egress_is_https_and_the_cache_port_to_the_cache_only(any_run: ProgramRun) -> None:
    groups = {
        sg.resource_id: sg.name.removeprefix(f"{any_run.prefix}-")
        for sg in any_run.of_type("aws:ec2/securityGroup:SecurityGroup")
    }
    cache_sg = next(i for i, n in groups.items() if n == "cache")
    api_sg = next(i for i, n in groups.items() if n == "api")
    egress: dict[str, set[tuple[int, str]]] = {}
    for rule in any_run.of_type(SG_EGRESS):
        r = rule.inputs
        assert r["ipProtocol"] == "tcp"
        assert r["fromPort"] == r["toPort"]
        to = r.get("cidrIpv4") or groups[r["referencedSecurityGroupId"]]
        egress.setdefault(groups[r["securityGroupId"]], set()).add((r["fromPort"], to))
    for role in ("api", "worker", "metrics"):
        assert egress[role] == {(443, "0.0.0.0/0"), (6379, "cache")}, role
    assert egress["alb"] == {(8000, "api")}
    assert "cache" not in egress  # Valkey only answers
    assert cache_sg != api_sg


def _clear_strings(value: Any) -> list[str]:
    """Every string in `value` that is not inside a secret-marked wrapper."""
    if isinstance(value, dict):
        if SECRET_SIG_KEY in value:
            return []
        return [s for v in value.values() for s in _clear_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _clear_strings(v)]
    return [value] if isinstance(value, str) else []


def test_no_secret_reaches_state_in_clear(fresh_run: ProgramRun) -> None:
    """Auth token, API key and registry password only ever travel marked secret."""
    for resource in fresh_run.resources:
        if resource.typ == "random:index/randomPassword:RandomPassword":
            continue  # the generator's own output is a secret by its schema
        leaked = [s for s in _clear_strings(resource.inputs) if SECRET_SENTINEL in s]
        assert not leaked, (resource.name, leaked)


def test_the_images_run_the_same_health_checks_as_ecs(fresh_run: ProgramRun) -> None:
    """`docker run` and ECS judge a container alike, and the command's `python` is the venv's."""
    dockerfile = (ROOT / "images" / "Dockerfile").read_text()
    assert 'PATH="/app/.venv/bin:${PATH}"' in dockerfile
    stages = dockerfile.split("\nFROM ")
    for role in ("worker", "metrics"):
        (stage,) = [s for s in stages if s.startswith(f"runtime AS {role}")]
        (line,) = [ln for ln in stage.splitlines() if ln.strip().startswith('CMD ["python"')]
        image_command = json.loads(line.strip().removeprefix("CMD "))
        assert ["CMD", *image_command] == fresh_run.container(role)["healthCheck"]["command"]
