"""The policies of ``multitype iam policy`` against the AWS operations the project's code really makes.

``test_recorded_flows_are_allowed_and_nothing_broader`` records every
operation (botocore's ``provide-client-params`` event) of three principals:

- the launcher (in-process, :func:`aws_recorder.recording`): ``sync push
  --delete``, ``sagemaker launch``/``list``/``status``/``logs``/``collect``,
  ``sagemaker deploy``/``endpoints``/``invoke``/``undeploy`` and ``registry add
  --sagemaker``/``promote`` (of the baseline trained on the S3 root below),
  ``iam policy launcher``, ``cost budget create``, ``cost refresh`` (Price List
  API and spot price history), ``sync archive --yes``, ``doctor`` (STS, the
  bucket round trip, IAM reads, Budgets, EC2 and SageMaker listings), ``sync
  pull``, ``autoscale apply`` (twice: creates, then changes), ``status`` and
  ``destroy``;
- a job's role: ``train baseline`` on the S3 root (in-process), plus the S3
  calls of the transformer training on the instance below (the same code runs
  in a SageMaker job);
- the EC2 instance: the REAL rendered user data run with bash (as in
  ``test_user_data.py``) against SeaweedFS, moto and the IMDS stub, its Python
  processes recording through ``aws_record_site/sitecustomize.py``: code
  fetch, configs, CloudWatch Logs shipping, training with checkpoints on the S3
  root, the finished mark, the log push, and the cancel of its own persistent
  spot request.

Each call must be allowed on its own resource by the policy of whoever makes
it; the same call on another bucket, prefix, job name, log group, budget name,
region or another project's spot request must not be; and every action a
policy grants must have been made by that principal's flows or have its reason
in ``iam.REASONS`` (all offenders reported at once).

The launcher's flows include ``ec2 launch`` (a persistent spot request),
``status``, ``list``, ``logs`` and ``terminate --yes``; RunInstances is
evaluated per resource type as IAM does (:func:`aws_recorder.expand`).
``test_contract_operations`` also checks the calls on resources moto cannot
make (a spot request of RunInstances, a subnet, another project's instance),
and ``test_suite_record`` every action of a whole-suite recording
(``-p tests.cloud.aws_recorder --record-aws``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest
import yaml

from multitype.cloud import iam
from tests.cloud import aws_recorder as rec
from tests.cloud.jobs_helpers import edit_describe, put_lines
from tests.cloud.launch_helpers import make_project
from tests.cloud.test_sagemaker_deploy import queue_invoke_answer

ACCOUNT, REGION = "123456789012", "us-east-1"
ADMIN_ONLY = {  # `iam policy --create` is run once by an administrator, not with the launcher policy
    "iam:CreateRole", "iam:UpdateAssumeRolePolicy", "iam:PutRolePolicy", "iam:CreateInstanceProfile",
    "iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile", "iam:CreatePolicy",
    "iam:ListPolicyVersions", "iam:CreatePolicyVersion", "iam:DeletePolicyVersion"}


PROJECT = "bbc-news"
OTHER_PROJECT = {"multitype:project": "someone-else"}


def _scope(bucket: str, prefix: str = "team/proj") -> iam.Scope:
    return iam.Scope(bucket=bucket, prefix=prefix, region=REGION, account=ACCOUNT, project=PROJECT,
                     sagemaker_role="MultitypeSageMaker")


def _broader(call: rec.Call, prefix: str) -> list[tuple[rec.Call, Mapping[str, Mapping[str, str]] | None]]:
    """The same call on what is not ours: another bucket, a sibling prefix, another job, log group or budget,
    another region, another project's spot request or instance (with the resource tags to evaluate it under)."""
    p = dict(call.params)
    out: list[tuple[rec.Call, Mapping[str, Mapping[str, str]] | None]] = []
    if call.service == "s3" and "Bucket" in p:
        sibling = prefix.rsplit("/", 1)[0] + "/other" if "/" in prefix else "other"
        out.append((rec.Call("s3", call.operation, {**p, "Bucket": "someone-elses-bucket"}), None))
        if "Key" in p:
            out.append((rec.Call("s3", call.operation, {**p, "Key": p["Key"].replace(prefix, sibling, 1)}), None))
        elif "Prefix" in p:
            out.append((rec.Call("s3", call.operation, {**p, "Prefix": f"{sibling}/"}), None))
    if call.service == "sagemaker":
        for key, _ in rec.SAGEMAKER_RESOURCES:  # another job, model, endpoint config or endpoint
            if key in p:
                out.append((rec.Call("sagemaker", call.operation, {**p, key: "prod-pipeline-1"}), None))
        if call.operation.startswith("Create"):  # created without the project's tag
            out.append((rec.Call("sagemaker", call.operation, {k: v for k, v in p.items() if k != "Tags"}), None))
    if call.service == "logs" and "logGroupName" in p:
        out.append((rec.Call("logs", call.operation, {**p, "logGroupName": "/aws/lambda/billing"}), None))
    if call.action == "budgets:ModifyBudget":
        out.append((rec.Call("budgets", call.operation, {**p, "Budget": {"BudgetName": "finance-quarterly"}}), None))
    if call.service == "ec2":
        out.append((rec.Call("ec2", call.operation, p, call.ours, "eu-west-1"), None))
        if any(k.startswith("aws:RequestTag/") for k in p.get("_context", {})):  # a resource the launch tags
            requested = {k: v for k, v in p.get("_context", {}).items() if not k.startswith("aws:RequestTag/")}
            for tags in ({f"aws:RequestTag/{k}": v for k, v in OTHER_PROJECT.items()}, {}):  # another's, untagged
                out.append((rec.Call("ec2", call.operation, {**p, "_context": {**requested, **tags}}, call.ours,
                                     call.region), None))
        elif call.operation != "RunInstances" and "_resource" in p:  # (not an image, subnet or ENI it uses)
            rid = p["_resource"].rsplit("/", 1)[-1]
            out.append((call, {rid: OTHER_PROJECT}))  # another project's request or instance
            out.append((call, {}))  # an untagged one
    if call.service == "autoscaling":
        out += _broader_group(call)
    return out


def _broader_group(call: rec.Call) -> list[tuple[rec.Call, Mapping[str, Mapping[str, str]] | None]]:
    """An Auto Scaling call in another region, on another group, on another project's or an untagged group, or
    (a create) tagging it for another project."""
    p = dict(call.params)
    ours = {iam.PROJECT_TAG: PROJECT}
    out: list[tuple[rec.Call, Mapping[str, Mapping[str, str]] | None]] = [
        (rec.Call("autoscaling", call.operation, p, call.ours, "eu-west-1"), None)]
    if call.operation.startswith("Describe"):
        return out
    name = p.get("AutoScalingGroupName") or p["Tags"][0]["ResourceId"]
    renamed = {**p, "AutoScalingGroupName": "prod-web"} if "AutoScalingGroupName" in p else \
        {**p, "Tags": [{**t, "ResourceId": "prod-web"} for t in p["Tags"]]}
    out.append((rec.Call("autoscaling", call.operation, renamed, call.ours, call.region), {"prod-web": ours}))
    if call.operation == "CreateAutoScalingGroup":
        other = [{**t, "Value": "someone-else"} if t["Key"] == iam.PROJECT_TAG else t for t in p["Tags"]]
        untagged = [t for t in p["Tags"] if t["Key"] != iam.PROJECT_TAG]
        out += [(rec.Call("autoscaling", call.operation, {**p, "Tags": tags}, call.ours, call.region), None)
                for tags in (other, untagged)]
    else:
        out += [(call, {name: OTHER_PROJECT}), (call, {})]
    return out


def _check(document: dict[str, Any], calls: list[rec.Call], prefix: str = "team/proj",
           tags: Mapping[str, Mapping[str, str]] | None = None) -> None:
    assert rec.denied(document, calls, REGION, ACCOUNT, tags) == []
    for call in (c for each in calls for c in rec.expand(each)):
        for other, other_tags in _broader(call, prefix):
            resource, context = rec.target(other, REGION, ACCOUNT, other_tags)
            assert not rec.allowed(document, other.action, resource, context), (other, resource, context)


@contextlib.contextmanager
def price_list_api() -> Iterator[str]:
    """The AWS Price List API, which moto lacks, on 127.0.0.1: every GetProducts finds no product (its URL)."""
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.dumps({"FormatVersion": "aws_v1", "PriceList": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# a short transformer run on the instance: 3 steps an epoch, a checkpoint every 2, older ones rotated out
INSTANCE_TRAINING = {"num_epochs": 3, "learning_rate": 1e-3,
                     "checkpoint": {"every_steps": 2, "every_minutes": None, "keep_last_epochs": 1}}


def _instance_flow(tmp_path: Path, s3_server, imds_stub) -> tuple[list[rec.Call], dict[str, dict[str, str]]]:
    """Run the rendered user data as an instance would (a persistent spot request tagged with the project, which
    it cancels after training); return what its Python processes called and the spot request's tags."""
    from multitype.cloud.aws import client
    from multitype.cloud.bundle import code_files
    from multitype.cloud.ec2.userdata import render_user_data
    from multitype.config import AwsConfig
    from multitype.sync import sync
    from tests.cloud import spot_helpers as spot
    from tests.conftest import write_configs
    from tests.transformer.conftest import transformer_yaml, write_processed

    project = write_processed(tmp_path / "ec2-project")
    write_configs(project / "configs", transformer=transformer_yaml(**INSTANCE_TRAINING),
                  project=f"name: {PROJECT}\nseed: 42\naws: {{region: {REGION}}}\n")
    root = f"s3://{s3_server.make_bucket('instance')}/proj"
    sync("push", local=project, remote=root, only="data,configs,code", endpoint_url=s3_server.endpoint_url,
         code_files=code_files(project))
    model = spot.tiny_model(tmp_path / spot.MODEL_DIR_NAME)
    tag = [{"Key": iam.PROJECT_TAG, "Value": PROJECT}]
    made = client("ec2", AwsConfig(region=REGION)).request_spot_instances(
        InstanceCount=1, Type="persistent",
        LaunchSpecification={"ImageId": "ami-12c6146b", "InstanceType": "g5.xlarge"},
        TagSpecifications=[{"ResourceType": "spot-instances-request", "Tags": tag}])["SpotInstanceRequests"][0]
    found = client("ec2", AwsConfig(region=REGION)).describe_spot_instance_requests(
        SpotInstanceRequestIds=[made["SpotInstanceRequestId"]])["SpotInstanceRequests"][0]
    imds_stub.instance_id = found["InstanceId"]
    tags = {found["SpotInstanceRequestId"]: {t["Key"]: t["Value"] for t in found.get("Tags", [])}}
    assert tags[found["SpotInstanceRequestId"]] == {iam.PROJECT_TAG: PROJECT}  # as ec2 launch tags its request

    script = tmp_path / "user-data.sh"
    script.write_text(render_user_data(root=root, region=REGION, run_id="20261201-iam-coverage",
                                       train_args=["transformer", "--model-name", str(model)],
                                       endpoint_url=s3_server.endpoint_url), encoding="utf-8")
    record = tmp_path / "instance-calls.jsonl"
    env = {**os.environ, **spot.THREADS_ENV, "MULTITYPE_WORK_DIR": str(tmp_path / "instance"),
           "MULTITYPE_SHUTDOWN_CMD": "true", "MULTITYPE_USE_PYTHON": sys.executable,
           "MULTITYPE_LOG_SHIP_INTERVAL": "0.5"}
    env.pop("AWS_ENDPOINT_URL", None)  # the script sets the S3 endpoint itself (endpoint_url)
    done = subprocess.run(["bash", str(script)], env=rec.subprocess_env(env, record), stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=300)
    log = (tmp_path / "instance" / "user-data.log").read_text(errors="replace")
    assert done.returncode == 0, (shlex.join(["bash", str(script)]), log[-3000:])
    assert f"cancelled the persistent spot request {found['SpotInstanceRequestId']}" in log
    return rec.load(record), tags


def _ec2_flows(cli, where: list[str]) -> dict[str, dict[str, str]]:
    """``ec2 launch`` (persistent spot) / ``status`` / ``list`` / ``logs`` / ``terminate --yes`` of the launcher;
    the tags of the resources it terminated and cancelled (resource id -> tags, as AWS holds them).

    moto's RunInstances makes a spot instance without a spot request, so the persistent request that terminate
    cancels is made by the test (as in test_ec2_instances.py), with the project's tag ``ec2 launch`` puts on it."""
    from tests.cloud import ec2_helpers as h

    h.register_image(h.DLAMI.format(date="20250601"), "2025-06-01T00:00:00")
    res = cli("ec2", "launch", "--model-name", "minilm", "--spot", "--restart-on-interruption", *where)
    assert res.exit_code == 0, res.stderr
    launched = res.stdout.strip()
    ours = {iam.PROJECT_TAG: PROJECT}
    spec = {"ImageId": "ami-12c6146b", "InstanceType": "g5.xlarge"}
    request = h.ec2().request_spot_instances(InstanceCount=1, Type="persistent", LaunchSpecification=spec,
                                             TagSpecifications=[{"ResourceType": "spot-instances-request",
                                                                 "Tags": [{"Key": iam.PROJECT_TAG, "Value": PROJECT}]}],
                                             )["SpotInstanceRequests"][0]["SpotInstanceRequestId"]
    spot = h.ec2().describe_spot_instance_requests(SpotInstanceRequestIds=[request])["SpotInstanceRequests"][0][
        "InstanceId"]
    run = "multitype-minilm-20261201-100000"
    h.ec2().create_tags(Resources=[spot], Tags=[{"Key": iam.PROJECT_TAG, "Value": PROJECT},
                                                {"Key": "multitype:run", "Value": run}])
    h.put_logs(run, ["METRIC val_macro_f1=0.5"])
    for args in (["ec2", "status", launched], ["ec2", "list"], ["ec2", "logs", run], ["ec2", "status", run],
                 ["ec2", "terminate", spot, "--yes"], ["ec2", "terminate", launched, "--yes"]):
        res = cli(*args, *where)
        assert res.exit_code == 0, (args, res.stderr)
    return {launched: ours, spot: ours, request: ours}


def _autoscale_flow(cli: Any, where: list[Any], configs: Path) -> str:
    """``autoscale``: apply (creates), apply with changes (a template version, the group, the policy, schedules
    put and deleted, a tag), status, destroy; returns the fleet's name (also its template's)."""
    from tests.cloud import ec2_helpers as h

    h.register_image(h.DLAMI.format(date="20250601"), "2025-06-01T10:00:00")
    subnets = ",".join(s["SubnetId"] for s in h.ec2().describe_subnets()["Subnets"][:2])
    flags = ["--model", "models/final/logreg", "--subnets", subnets, "--instance-profile", iam.DEFAULT_EC2_PROFILE,
             "--spot-share", "0.5"]
    runs = [["apply", *flags, "--schedule", "0 8 * * MON-FRI=3", "--schedule", "0 20 * * *=1"],
            ["apply", *flags, "--instance-type", "c5.2xlarge", "--max", "6", "--desired", "3", "--schedule",
             "0 8 * * MON-FRI=4"], ["status"], ["destroy", "--yes"]]
    for i, args in enumerate(runs):
        if i == 1:  # a tag more: CreateOrUpdateTags on the group
            path = configs / "project.yaml"
            data = yaml.safe_load(path.read_text())
            data["aws"]["tags"]["cost-centre"] = "nlp-serving"
            path.write_text(yaml.safe_dump(data, sort_keys=False))
        res = cli("autoscale", *args, *where)
        assert res.exit_code == 0, (args, res.stderr)
    return f"multitype-{PROJECT}-serve"


AUTOSCALE_OPERATIONS = {
    "ec2:CreateLaunchTemplate", "ec2:CreateLaunchTemplateVersion", "ec2:DeleteLaunchTemplate",
    "ec2:DescribeLaunchTemplateVersions", "autoscaling:CreateAutoScalingGroup", "autoscaling:UpdateAutoScalingGroup",
    "autoscaling:CreateOrUpdateTags", "autoscaling:DeleteAutoScalingGroup", "autoscaling:PutScalingPolicy",
    "autoscaling:DeletePolicy", "autoscaling:PutScheduledUpdateGroupAction", "autoscaling:DeleteScheduledAction",
    "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribePolicies", "autoscaling:DescribeScalingActivities",
    "autoscaling:DescribeScheduledActions"}


def test_autoscale_flows_are_allowed_and_nothing_broader(cli, s3_server, aws_env, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         moto_template_versions) -> None:
    from tests.cloud import ec2_helpers as h

    bucket = s3_server.make_bucket("fleet")
    remote = f"s3://{bucket}/team/proj"
    root, configs = make_project(tmp_path, remote, prepared=False)
    h.make_instance_profile(iam.DEFAULT_EC2_PROFILE)
    with rec.recording(monkeypatch) as calls:
        name = _autoscale_flow(cli, ["--root", root, "--config-dir", configs], configs)
    ours = [c for c in calls if c.ours]
    made = {c.action for c in ours}
    assert AUTOSCALE_OPERATIONS <= made, sorted(AUTOSCALE_OPERATIONS - made)
    launcher = iam.policy("launcher", _scope(bucket))
    _check(launcher, ours, tags={name: {iam.PROJECT_TAG: PROJECT}})
    # every action the autoscale statements grant is made here, or has its reason
    statements = [s for s in launcher["Statement"] if "Serve" in s["Sid"] or s["Sid"] == "AutoScalingServiceRole"]
    granted = {a for s in statements for a in s["Action"]}
    # but ec2:RunInstances: AWS checks, when the group is created, that the caller may launch from the template
    # (no request of ours; ec2 launch makes it in test_recorded_flows_are_allowed_and_nothing_broader)
    assert granted - made - set(iam.REASONS) == {"ec2:RunInstances"}
    # the group is created, and the template used by it, only with the project's tag
    group = f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:*:autoScalingGroupName/{name}"
    assert not rec.allowed(launcher, "autoscaling:CreateAutoScalingGroup", group, {"aws:RequestedRegion": REGION})
    template = f"arn:aws:ec2:{REGION}:{ACCOUNT}:launch-template/lt-0abc"
    assert rec.allowed(launcher, "ec2:RunInstances", template, {"aws:ResourceTag/multitype:project": PROJECT})
    assert not rec.allowed(launcher, "ec2:RunInstances", template, {"aws:ResourceTag/multitype:project": "x"})


@pytest.mark.slow
def test_recorded_flows_are_allowed_and_nothing_broader(cli, s3_server, aws_env, imds_stub, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         moto_template_versions) -> None:
    monkeypatch.delenv("SAGEMAKER_ROLE", raising=False)
    monkeypatch.setenv("MULTITYPE_PRICES", str(tmp_path / "prices.json"))  # cost refresh's user copy
    bucket = s3_server.make_bucket("cover")
    remote = f"s3://{bucket}/team/proj"
    root, configs = make_project(tmp_path, remote)
    project = configs / "project.yaml"  # ec2 launch needs the instance profile named; --create below makes it
    project.write_text(project.read_text().replace("ec2_instance_profile: null",
                                                   f"ec2_instance_profile: {iam.DEFAULT_EC2_PROFILE}"))
    where = ["--root", str(root), "--config-dir", str(configs)]
    for kind in ("sagemaker-role", "ec2-profile"):  # so that doctor reads real roles (admin step: not recorded)
        assert cli("iam", "policy", kind, "--create", "--config-dir", configs).exit_code == 0
    s3_server.client().put_object(Bucket=bucket, Key="team/proj/results/stale.json", Body=b"{}")  # --delete's
    raw = f"{remote}/data/raw/news.jsonl"  # the raw data of `sagemaker prepare`, pushed by the sync below
    (root / "data" / "raw").mkdir(parents=True, exist_ok=True)
    (root / "data" / "raw" / "news.jsonl").write_text('{"text": "Shares fell.", "label": "business"}\n')

    prices = contextlib.ExitStack()
    monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", prices.enter_context(price_list_api()))
    with prices, rec.recording(monkeypatch) as launcher_calls:
        for args in (["sync", "push", "--local", root, "--remote", remote, "--delete", "--config-dir", configs],
                     ["sagemaker", "launch", "--model-name", "minilm", *where],
                     ["sagemaker", "prepare", "--input", raw, *where],
                     ["sagemaker", "list", *where],
                     ["iam", "policy", "launcher", "--config-dir", configs],
                     ["cost", "budget", "create", "--amount", "50", "--email", "ops@example.com", *where]):
            res = cli(*args)
            assert res.exit_code == 0, (args, res.stderr)
        ec2_tags = _ec2_flows(cli, where)
        fleet = _autoscale_flow(cli, where, configs)
        job = next(c.params["TrainingJobName"] for c in launcher_calls if c.operation == "CreateTrainingJob")
        put_lines(job, "algo-1", [(1764583200000, "METRIC val_accuracy=0.5")])  # the job's log (test setup)
        prepared = next(c.params["ProcessingJobName"] for c in launcher_calls
                        if c.operation == "CreateProcessingJob")
        put_lines(prepared, "algo-1", [(1764583200000, "prepared")], group=iam.PROCESSING_LOG_GROUP)
        with edit_describe(lambda parsed, _: parsed.update(ProcessingJobStatus="InProgress"), "ProcessingJob"):
            assert cli("sagemaker", "prepare", "stop", prepared, *where).exit_code == 0  # moto: Completed
        # moto has no model.tar.gz for the job and no Price List API, SeaweedFS no lifecycle rules: these may
        # answer an error, after making their calls
        for args in (["sync", "archive", "--remote", remote, "--yes", "--config-dir", configs],
                     ["sagemaker", "status", job, *where], ["sagemaker", "logs", job, *where],
                     ["sagemaker", "prepare", "status", prepared, *where],
                     ["sagemaker", "prepare", "logs", prepared, *where],
                     ["sagemaker", "collect", job, *where],
                     ["cost", "refresh", *where],
                     ["doctor", "--json", "--local", root, *where],
                     ["sync", "pull", "--local", tmp_path / "pulled", "--remote", remote, "--only", "results",
                      "--config-dir", configs]):
            assert cli(*args).exit_code in (0, 1, 2), args
    with rec.recording(monkeypatch) as job_calls:
        res = cli("train", "baseline", "--models", "logreg", "--root", remote, "--config-dir", configs)
        assert res.exit_code == 0, res.stderr
    # the launcher again: the baseline just trained on the S3 root behind an endpoint, invoked, listed, removed
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", aws_env.endpoint_url)
    queue_invoke_answer(aws_env.endpoint_url, json.dumps({"labels": ["business"], "score_kind": "prob",
                                                          "scores": [{"business": 1.0}]}))
    on_remote = ["--root", remote, "--config-dir", configs]
    with rec.recording(monkeypatch) as deploy_calls:
        for args in (["sagemaker", "deploy", "logreg", *on_remote], ["sagemaker", "endpoints", *on_remote],
                     ["sagemaker", "invoke", "multitype-logreg", "--text", "Shares fell.", *on_remote],
                     ["sagemaker", "undeploy", "multitype-logreg", "--yes", *on_remote],
                     # the registry's SageMaker mirror: a model package group and package, then its approval
                     ["registry", "add", "models/final/logreg", "--name", "news", "--sagemaker", *on_remote],
                     ["registry", "promote", "news:1", "--stage", "production", *on_remote]):
            res = cli(*args)
            assert res.exit_code == 0, (args, res.stderr)
    launcher_calls += deploy_calls
    instance_calls, spot_tags = _instance_flow(tmp_path, s3_server, imds_stub)

    ours = [c for c in launcher_calls if c.ours]
    operations = {f"{c.service}:{c.operation}" for c in ours}
    for expected in ("s3:PutObject", "s3:DeleteObject", "s3:ListObjectsV2", "s3:GetObject",
                     "ec2:RunInstances", "ec2:DescribeImages", "ec2:DescribeInstanceTypes",
                     "ec2:DescribeSpotInstanceRequests", "ec2:CancelSpotInstanceRequests", "ec2:TerminateInstances",
                     "logs:DescribeLogStreams", "iam:GetInstanceProfile",
                     "s3:GetBucketLifecycleConfiguration", "sagemaker:CreateTrainingJob",
                     "sagemaker:DescribeTrainingJob", "sagemaker:ListTrainingJobs", "sts:GetCallerIdentity",
                     "sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob",
                     "sagemaker:StopProcessingJob",
                     "iam:GetRole", "iam:GetRolePolicy", "iam:GetInstanceProfile", "budgets:CreateBudget",
                     "budgets:DescribeBudgets", "budgets:DescribeNotificationsForBudget", "pricing:GetProducts",
                     "ec2:DescribeSpotPriceHistory", "ec2:DescribeInstances", "logs:GetLogEvents",
                     "sagemaker:CreateModel", "sagemaker:CreateEndpointConfig", "sagemaker:CreateEndpoint",
                     "sagemaker:DescribeEndpoint", "sagemaker:DescribeEndpointConfig", "sagemaker:ListEndpoints",
                     "sagemaker:InvokeEndpoint", "sagemaker:DeleteEndpoint", "sagemaker:DeleteEndpointConfig",
                     "sagemaker:DeleteModel", "sagemaker:DescribeModelPackageGroup",
                     "sagemaker:CreateModelPackageGroup", "sagemaker:CreateModelPackage",
                     "sagemaker:UpdateModelPackage"):
        assert expected in operations, (expected, sorted(operations))
    scope = _scope(bucket)
    launcher = iam.policy("launcher", scope)
    _check(launcher, ours, tags={**ec2_tags, fleet: {iam.PROJECT_TAG: PROJECT}})
    for call in (c for c in ours if c.operation in ("CreateTrainingJob", "CreateProcessingJob",
                                                    "CreateModel")):  # the role handed over
        role = call.params.get("RoleArn") or call.params["ExecutionRoleArn"]
        assert rec.allowed(launcher, "iam:PassRole", role,
                           {"iam:PassedToService": "sagemaker.amazonaws.com"})
        assert not rec.allowed(launcher, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/Admin",
                               {"iam:PassedToService": "sagemaker.amazonaws.com"})
        assert not rec.allowed(launcher, "iam:PassRole", role,
                               {"iam:PassedToService": "lambda.amazonaws.com"})

    # the instance: everything its user data and training called, with the EC2 profile of its own root
    on_instance = {f"{c.service}:{c.operation}" for c in instance_calls}
    for expected in ("s3:ListObjectsV2", "s3:GetObject", "s3:PutObject", "s3:DeleteObjects", "logs:CreateLogGroup",
                     "logs:CreateLogStream", "logs:PutLogEvents", "ec2:DescribeSpotInstanceRequests",
                     "ec2:CancelSpotInstanceRequests"):
        assert expected in on_instance, (expected, sorted(on_instance))
    instance_bucket = next(c.params["Bucket"] for c in instance_calls if c.service == "s3")
    _check(iam.policy("ec2-profile", _scope(instance_bucket, "proj")), instance_calls, "proj", spot_tags)

    # a job's role: the baseline on the S3 root here, the transformer training's S3 calls on the instance
    in_job = [c for c in job_calls if c.ours]
    assert {c.operation for c in in_job} >= {"PutObject", "GetObject"}
    for kind in ("sagemaker-role", "ec2-profile"):
        _check(iam.policy(kind, scope), in_job)
    _check(iam.policy("sagemaker-role", _scope(instance_bucket, "proj")),
           [c for c in instance_calls if c.service == "s3"], "proj")

    # nothing broader: every action a policy grants was made by that principal's flows or has its reason
    made = {"launcher": {c.action for c in ours},
            "sagemaker-role": {c.action for c in in_job + instance_calls if c.service == "s3"},
            "ec2-profile": {c.action for c in instance_calls}}
    unexplained, granted = [], {}
    for kind, actions_made in made.items():
        document = iam.policy(kind, scope)
        granted[kind] = iam.actions(document)
        for statement in document["Statement"]:
            if any(a.startswith("s3:") for a in statement["Action"]):
                assert statement["Resource"] != "*"
        for action in sorted(granted[kind]):
            assert "*" not in action, (kind, action)
            if action not in actions_made and action not in iam.REASONS:
                unexplained.append((kind, action))
    assert unexplained == [], "granted but neither made nor explained in iam.REASONS"
    # and no reason for an action every policy granting it sees made anyway
    redundant = [a for a in iam.REASONS if all(a in made[k] for k in made if a in granted[k])]
    assert redundant == [], "a reason in iam.REASONS for an action the flows make"
    # every operation recorded (bar the administrator's --create, not run under recording) is in some policy
    everything = {c.action for c in ours + in_job + instance_calls}
    assert everything - set().union(*granted.values()) == set()


def test_contract_operations() -> None:
    """What ec2 launch/status/terminate, cost refresh and cost budget will call, on the resources they touch."""
    scope = _scope("nlp-bucket")
    launcher, profile = iam.policy("launcher", scope), iam.policy("ec2-profile", scope)
    ec2 = f"arn:aws:ec2:{REGION}:{ACCOUNT}"
    tagged = {"aws:RequestTag/multitype:project": "bbc-news"}
    ours = {"aws:ResourceTag/multitype:project": "bbc-news"}
    region = {"ec2:Region": REGION}
    allow = [
        ("ec2:RunInstances", f"{ec2}:instance/i-0abc", tagged),
        ("ec2:RunInstances", f"{ec2}:volume/vol-0abc", tagged),
        ("ec2:RunInstances", f"{ec2}:spot-instances-request/sir-1", tagged),
        ("ec2:RunInstances", f"arn:aws:ec2:{REGION}::image/ami-0abc", {}),
        ("ec2:RunInstances", f"{ec2}:subnet/subnet-1", {}),
        ("ec2:RunInstances", f"{ec2}:security-group/sg-1", {}),
        ("ec2:RunInstances", f"{ec2}:network-interface/eni-1", {}),
        ("ec2:CreateTags", f"{ec2}:instance/i-0abc", {"ec2:CreateAction": "RunInstances", **tagged}),
        ("ec2:TerminateInstances", f"{ec2}:instance/i-0abc", ours),
        ("ec2:CancelSpotInstanceRequests", f"{ec2}:spot-instances-request/sir-1", ours),
        ("ec2:DescribeInstances", "*", region), ("ec2:DescribeImages", "*", region),
        ("ec2:DescribeSpotPriceHistory", "*", region), ("ec2:DescribeSpotInstanceRequests", "*", region),
        ("ec2:DescribeInstanceTypes", "*", region), ("pricing:GetProducts", "*", {}),
        ("budgets:ModifyBudget", f"arn:aws:budgets::{ACCOUNT}:budget/multitype-monthly", {}),
        ("budgets:ViewBudget", f"arn:aws:budgets::{ACCOUNT}:budget/multitype-monthly", {}),
        ("logs:GetLogEvents", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/multitype/ec2:log-stream:run-1", {}),
        ("logs:DescribeLogStreams", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/multitype/ec2:*", {}),
        ("logs:GetLogEvents", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/multitype/ec2", {}),
        ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/multitype-ec2", {"iam:PassedToService": "ec2.amazonaws.com"}),
        ("iam:GetInstanceProfile", f"arn:aws:iam::{ACCOUNT}:instance-profile/multitype-ec2", {}),
    ]
    for action, resource, context in allow:
        assert rec.allowed(launcher, action, resource, context), (action, resource)
    deny = [
        ("ec2:RunInstances", f"{ec2}:instance/i-0abc", {"aws:RequestTag/multitype:project": "other"}),
        ("ec2:RunInstances", f"{ec2}:instance/i-0abc", {}),  # untagged
        ("ec2:CreateTags", f"{ec2}:instance/i-0abc", {}),  # tagging someone else's instance
        ("ec2:CreateTags", f"{ec2}:instance/i-0abc", tagged),  # ... as ours (to terminate it next)
        ("ec2:CreateTags", f"{ec2}:instance/i-0abc", ours),  # retagging ours: ec2 launch tags on RunInstances only
        ("ec2:DescribeInstances", "*", {"ec2:Region": "eu-west-1"}),
        ("budgets:ModifyBudget", f"arn:aws:budgets::{ACCOUNT}:budget/finance-quarterly", {}),
        ("ec2:TerminateInstances", f"{ec2}:instance/i-0abc", {"aws:ResourceTag/multitype:project": "other"}),
        ("ec2:TerminateInstances", f"{ec2}:instance/i-0abc", {}),
        ("logs:GetLogEvents", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/x:log-stream:s", {}),
        ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/multitype-ec2", {"iam:PassedToService": "lambda.amazonaws.com"}),
        ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/OrganizationAdmin", {"iam:PassedToService": "ec2.amazonaws.com"}),
        ("ec2:StopInstances", f"{ec2}:instance/i-0abc", ours),
        ("iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/x", {}),
    ]
    for action, resource, context in deny:
        assert not rec.allowed(launcher, action, resource, context), (action, resource, context)
    # RunInstances as the CONTRACT describes ec2 launch's request, evaluated per resource type as IAM does
    tags = [{"Key": "multitype:project", "Value": "bbc-news"}, {"Key": "multitype:run", "Value": "run-1"},
            {"Key": "Name", "Value": "multitype-run-1"}]
    request = {"ImageId": "ami-0abc", "InstanceType": "g5.xlarge", "MinCount": 1, "MaxCount": 1,
               "IamInstanceProfile": {"Name": "multitype-ec2"}, "InstanceInitiatedShutdownBehavior": "terminate",
               "MetadataOptions": {"HttpTokens": "required"}, "SubnetId": "subnet-1", "SecurityGroupIds": ["sg-1"],
               "InstanceMarketOptions": {"MarketType": "spot", "SpotOptions": {"SpotInstanceType": "persistent",
                                                                               "InstanceInterruptionBehavior": "stop"}},
               "TagSpecifications": [{"ResourceType": t, "Tags": tags}
                                     for t in ("instance", "volume", "spot-instances-request")]}
    launch = rec.Call("ec2", "RunInstances", request, region=REGION)
    assert rec.denied(launcher, [launch], REGION, ACCOUNT) == []
    checked = {(c.action, c.params["_resource"].split("/")[0]) for c in rec.expand(launch)}
    assert ("ec2:CreateTags", "spot-instances-request") in checked and ("ec2:RunInstances", "image") in checked
    for kind in ("instance", "volume", "spot-instances-request"):  # each created resource must carry the tag
        untagged = {**request, "TagSpecifications": [s for s in request["TagSpecifications"]
                                                      if s["ResourceType"] != kind]}
        assert rec.denied(launcher, [rec.Call("ec2", "RunInstances", untagged, region=REGION)], REGION, ACCOUNT)
    other = {**request, "TagSpecifications": [{**s, "Tags": [{"Key": "multitype:project", "Value": "x"}]}
                                              for s in request["TagSpecifications"]]}
    assert rec.denied(launcher, [rec.Call("ec2", "RunInstances", other, region=REGION)], REGION, ACCOUNT)
    assert rec.denied(launcher, [rec.Call("ec2", "RunInstances", request, region="eu-west-1")], REGION, ACCOUNT)
    terminate = rec.Call("ec2", "TerminateInstances", {"InstanceIds": ["i-0abc"]}, region=REGION)
    assert rec.denied(launcher, [terminate], REGION, ACCOUNT, {"i-0abc": {"multitype:project": "bbc-news"}}) == []
    assert rec.denied(launcher, [terminate], REGION, ACCOUNT, {"i-0abc": {"multitype:project": "x"}})

    # the instance itself: its user data pulls code/configs/data and pushes results, logs to /multitype/ec2
    group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/multitype/ec2:log-stream:run-1"
    for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
        assert rec.allowed(profile, action, group, {})
        assert not rec.allowed(profile, action, group.replace("/multitype/ec2", "/aws/sagemaker/TrainingJobs"), {})
    for key in ("code/requirements.txt", "configs/project.yaml", "data/processed/train_4class.csv"):
        assert rec.allowed(profile, "s3:GetObject", f"arn:aws:s3:::nlp-bucket/team/proj/{key}", {})
    assert rec.allowed(profile, "s3:PutObject", "arn:aws:s3:::nlp-bucket/team/proj/results/transformer/m.json", {})
    assert not rec.allowed(profile, "s3:DeleteObject", "arn:aws:s3:::nlp-bucket/team/proj/data/processed/x.csv", {})
    assert not any(a.startswith(("iam:", "sagemaker:", "budgets:", "pricing:")) for a in iam.actions(profile))
    sir = f"{ec2}:spot-instances-request/sir-1"
    assert rec.allowed(profile, "ec2:CancelSpotInstanceRequests", sir, ours)
    assert not rec.allowed(profile, "ec2:CancelSpotInstanceRequests", sir, {"aws:ResourceTag/multitype:project": "x"})
    assert not rec.allowed(profile, "ec2:TerminateInstances", f"{ec2}:instance/i-0abc", ours)
    assert not rec.allowed(profile, "ec2:DescribeSpotInstanceRequests", "*", {"ec2:Region": "eu-west-1"})


def test_suite_record() -> None:
    """Every action a whole-suite recording made through our code is granted by some policy (or is admin-only)."""
    path = os.environ.get("MULTITYPE_AWS_RECORD")
    if not path:
        pytest.skip("set MULTITYPE_AWS_RECORD to a file written by -p tests.cloud.aws_recorder --record-aws FILE")
    calls = [c for c in rec.load(path) if c.ours]
    assert calls, f"{path} holds no call made by multitype's code"
    scope = _scope("b")
    granted = set().union(*(iam.actions(iam.policy(k, scope)) for k in ("sagemaker-role", "ec2-profile", "launcher")))
    missing = sorted({c.action for c in calls} - granted - ADMIN_ONLY)
    assert missing == [], missing
