"""The policies of ``multitype iam policy`` against the AWS operations the project's code really makes.

``test_recorded_flows_are_allowed_and_nothing_broader`` runs a representative
set of commands in-process while :func:`aws_recorder.recording` records every
operation (botocore's ``provide-client-params`` event): ``sync push --delete``,
``sync pull``, ``sagemaker launch``/``status``/``list``/``logs``/``collect``,
``train baseline`` on the S3 root (what a job does there with its role),
``iam policy launcher``, and ``doctor`` (STS, the bucket round trip, IAM reads,
Budgets, EC2 and SageMaker listings). Each call must be allowed on its own
resource by the policy of whoever makes it, the same call on another bucket,
prefix, job name or log group must not be, and every action a policy grants
must either have been recorded or have its reason in ``iam.REASONS``.

The EC2, cost and budget commands are built in parallel with this one:
``test_contract_operations`` checks the operations the CONTRACT names for them
on the resources they will touch, and ``test_suite_record`` checks every
action of a whole-suite recording (``-p tests.cloud.aws_recorder --record-aws``)
once they have landed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from multitype.cloud import iam
from tests.cloud import aws_recorder as rec
from tests.cloud.jobs_helpers import put_lines
from tests.cloud.launch_helpers import make_project

ACCOUNT, REGION = "123456789012", "us-east-1"
ADMIN_ONLY = {  # `iam policy --create` is run once by an administrator, not with the launcher policy
    "iam:CreateRole", "iam:UpdateAssumeRolePolicy", "iam:PutRolePolicy", "iam:CreateInstanceProfile",
    "iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile", "iam:CreatePolicy",
    "iam:ListPolicyVersions", "iam:CreatePolicyVersion", "iam:DeletePolicyVersion"}


def _scope(bucket: str) -> iam.Scope:
    return iam.Scope(bucket=bucket, prefix="team/proj", region=REGION, account=ACCOUNT, project="bbc-news",
                     sagemaker_role="MultitypeSageMaker")


def _broader(call: rec.Call) -> list[rec.Call]:
    """The same call on what is not ours: another bucket, a sibling prefix, another job or log group."""
    p = dict(call.params)
    out = []
    if call.service == "s3" and "Bucket" in p:
        out.append(rec.Call("s3", call.operation, {**p, "Bucket": "someone-elses-bucket"}))
        if "Key" in p:
            out.append(rec.Call("s3", call.operation, {**p, "Key": p["Key"].replace("team/proj", "team/other", 1)}))
        elif "Prefix" in p:
            out.append(rec.Call("s3", call.operation, {**p, "Prefix": "team/other/"}))
    if call.service == "sagemaker" and "TrainingJobName" in p:
        out.append(rec.Call("sagemaker", call.operation, {**p, "TrainingJobName": "prod-pipeline-1"}))
    if call.service == "logs" and "logGroupName" in p:
        out.append(rec.Call("logs", call.operation, {**p, "logGroupName": "/aws/lambda/billing"}))
    return out


def _check(document: dict[str, Any], calls: list[rec.Call], bucket: str) -> None:
    assert rec.denied(document, calls, REGION, ACCOUNT) == []
    for call in (c for each in calls for c in rec.expand(each)):
        for other in _broader(call):
            resource, context = rec.target(other, REGION, ACCOUNT)
            assert not rec.allowed(document, other.action, resource, context), (other, resource)


@pytest.mark.slow
def test_recorded_flows_are_allowed_and_nothing_broader(cli, s3_server, aws_env, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAGEMAKER_ROLE", raising=False)
    bucket = s3_server.make_bucket("cover")
    remote = f"s3://{bucket}/team/proj"
    root, configs = make_project(tmp_path, remote)
    where = ["--root", str(root), "--config-dir", str(configs)]
    for kind in ("sagemaker-role", "ec2-profile"):  # so that doctor reads real roles (admin step: not recorded)
        assert cli("iam", "policy", kind, "--create", "--config-dir", configs).exit_code == 0
    s3_server.client().put_object(Bucket=bucket, Key="team/proj/results/stale.json", Body=b"{}")  # --delete's

    with rec.recording(monkeypatch) as launcher_calls:
        for args in (["sync", "push", "--local", root, "--remote", remote, "--delete", "--config-dir", configs],
                     ["sagemaker", "launch", "--model-name", "minilm", *where],
                     ["sagemaker", "list", *where],
                     ["iam", "policy", "launcher", "--config-dir", configs]):
            res = cli(*args)
            assert res.exit_code == 0, (args, res.stderr)
        job = next(c.params["TrainingJobName"] for c in launcher_calls if c.operation == "CreateTrainingJob")
        put_lines(job, "algo-1", [(1764583200000, "METRIC val_accuracy=0.5")])  # the job's log (test setup)
        # moto has no model.tar.gz for the job, SeaweedFS no lifecycle rules: these may answer an
        # error, after making their calls
        for args in (["sync", "archive", "--remote", remote, "--yes", "--config-dir", configs],
                     ["sagemaker", "status", job, *where], ["sagemaker", "logs", job, *where],
                     ["sagemaker", "collect", job, *where],
                     ["doctor", "--json", "--local", root, *where],
                     ["sync", "pull", "--local", tmp_path / "pulled", "--remote", remote, "--only", "results",
                      "--config-dir", configs]):
            assert cli(*args).exit_code in (0, 1, 2), args
    with rec.recording(monkeypatch) as job_calls:
        res = cli("train", "baseline", "--models", "logreg", "--root", remote, "--config-dir", configs)
        assert res.exit_code == 0, res.stderr

    ours = [c for c in launcher_calls if c.ours]
    operations = {f"{c.service}:{c.operation}" for c in ours}
    for expected in ("s3:PutObject", "s3:DeleteObject", "s3:ListObjectsV2", "s3:GetObject",
                     "sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:ListTrainingJobs",
                     "sts:GetCallerIdentity", "iam:GetRole", "iam:GetRolePolicy", "iam:GetInstanceProfile",
                     "budgets:DescribeBudgets", "ec2:DescribeInstances"):
        assert expected in operations, (expected, sorted(operations))
    scope = _scope(bucket)
    _check(iam.policy("launcher", scope), ours, bucket)
    for call in (c for c in ours if c.operation == "CreateTrainingJob"):  # the role it hands over
        launcher = iam.policy("launcher", scope)
        assert rec.allowed(launcher, "iam:PassRole", call.params["RoleArn"],
                           {"iam:PassedToService": "sagemaker.amazonaws.com"})
        assert not rec.allowed(launcher, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/Admin",
                               {"iam:PassedToService": "sagemaker.amazonaws.com"})
        assert not rec.allowed(launcher, "iam:PassRole", call.params["RoleArn"],
                               {"iam:PassedToService": "lambda.amazonaws.com"})
    in_job = [c for c in job_calls if c.ours]
    assert {c.operation for c in in_job} >= {"PutObject", "GetObject"}
    for kind in ("sagemaker-role", "ec2-profile"):
        _check(iam.policy(kind, scope), in_job, bucket)

    # nothing broader: every granted action was made by these flows or has its reason
    made = {c.action for c in ours + in_job}
    unexplained = []
    for kind in ("sagemaker-role", "ec2-profile", "launcher"):
        document = iam.policy(kind, scope)
        for statement in document["Statement"]:
            for action in statement["Action"]:
                assert "*" not in action, (kind, action)
                if action not in made and action not in iam.REASONS:
                    unexplained.append((kind, action))
            if any(a.startswith("s3:") for a in statement["Action"]):
                assert statement["Resource"] != "*"
    assert unexplained == []
    assert not [a for a in iam.REASONS if a in made and a not in iam.IAM_ONLY and not a.startswith(
        ("ec2:", "budgets:", "pricing:", "iam:", "logs:"))], "a reason for an action the flows make anyway"


def test_contract_operations() -> None:
    """What ec2 launch/status/terminate, cost refresh and cost budget will call, on the resources they touch."""
    scope = _scope("nlp-bucket")
    launcher, profile = iam.policy("launcher", scope), iam.policy("ec2-profile", scope)
    ec2 = f"arn:aws:ec2:{REGION}:{ACCOUNT}"
    tagged = {"aws:RequestTag/multitype:project": "bbc-news"}
    ours = {"aws:ResourceTag/multitype:project": "bbc-news"}
    allow = [
        ("ec2:RunInstances", f"{ec2}:instance/i-0abc", tagged),
        ("ec2:RunInstances", f"{ec2}:volume/vol-0abc", tagged),
        ("ec2:RunInstances", f"{ec2}:spot-instances-request/sir-1", tagged),
        ("ec2:RunInstances", f"arn:aws:ec2:{REGION}::image/ami-0abc", {}),
        ("ec2:RunInstances", f"{ec2}:subnet/subnet-1", {}),
        ("ec2:RunInstances", f"{ec2}:security-group/sg-1", {}),
        ("ec2:RunInstances", f"{ec2}:network-interface/eni-1", {}),
        ("ec2:CreateTags", f"{ec2}:instance/i-0abc", {"ec2:CreateAction": "RunInstances"}),
        ("ec2:TerminateInstances", f"{ec2}:instance/i-0abc", ours),
        ("ec2:CancelSpotInstanceRequests", f"{ec2}:spot-instances-request/sir-1", ours),
        ("ec2:DescribeInstances", "*", {}), ("ec2:DescribeImages", "*", {}),
        ("ec2:DescribeSpotPriceHistory", "*", {}), ("ec2:DescribeSpotInstanceRequests", "*", {}),
        ("ec2:DescribeInstanceTypes", "*", {}), ("pricing:GetProducts", "*", {}),
        ("budgets:ModifyBudget", f"arn:aws:budgets::{ACCOUNT}:budget/multitype-monthly", {}),
        ("budgets:ViewBudget", f"arn:aws:budgets::{ACCOUNT}:budget/multitype-monthly", {}),
        ("logs:GetLogEvents", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/multitype/ec2:log-stream:run-1", {}),
        ("logs:DescribeLogStreams", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/multitype/ec2:*", {}),
        ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/multitype-ec2", {"iam:PassedToService": "ec2.amazonaws.com"}),
        ("iam:GetInstanceProfile", f"arn:aws:iam::{ACCOUNT}:instance-profile/multitype-ec2", {}),
    ]
    for action, resource, context in allow:
        assert rec.allowed(launcher, action, resource, context), (action, resource)
    deny = [
        ("ec2:RunInstances", f"{ec2}:instance/i-0abc", {"aws:RequestTag/multitype:project": "other"}),
        ("ec2:RunInstances", f"{ec2}:instance/i-0abc", {}),  # untagged
        ("ec2:CreateTags", f"{ec2}:instance/i-0abc", {}),  # retagging an existing instance
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
    # the instance itself: its user data pulls code/configs/data and pushes results, logs to /multitype/ec2
    group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/multitype/ec2:log-stream:run-1"
    for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
        assert rec.allowed(profile, action, group, {})
        assert not rec.allowed(profile, action, group.replace("/multitype/ec2", "/aws/sagemaker/TrainingJobs"), {})
    for key in ("code/requirements.txt", "configs/project.yaml", "data/processed/train_4class.csv"):
        assert rec.allowed(profile, "s3:GetObject", f"arn:aws:s3:::nlp-bucket/team/proj/{key}", {})
    assert rec.allowed(profile, "s3:PutObject", "arn:aws:s3:::nlp-bucket/team/proj/results/transformer/m.json", {})
    assert not rec.allowed(profile, "s3:DeleteObject", "arn:aws:s3:::nlp-bucket/team/proj/data/processed/x.csv", {})
    assert not any(a.startswith(("ec2:", "iam:", "sagemaker:")) for a in iam.actions(profile))


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
