"""``multitype iam policy``: scoping, real action names, a linter's findings, and ``--create`` against moto IAM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from multitype.cloud import aws, iam
from multitype.config import AwsConfig, ProjectConfig
from tests.cloud.launch_helpers import project_yaml
from tests.conftest import write_configs

ACCOUNT = "123456789012"  # moto's


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    return write_configs(tmp_path / "configs", project=project_yaml("s3://nlp-bucket/team/proj"))


def _scope(**kw: str) -> iam.Scope:
    import yaml

    data = yaml.safe_load(project_yaml("s3://nlp-bucket/team/proj"))
    return iam.scope_for(ProjectConfig(**data), account=ACCOUNT, **kw)


def _statements(doc: dict) -> list[dict]:
    return doc["Statement"]


@pytest.mark.parametrize("kind", ["sagemaker-role", "ec2-profile", "launcher"])
def test_s3_is_scoped_to_the_prefix_and_never_wide(kind: str) -> None:
    doc = iam.policy(kind, _scope())
    s3 = [s for s in _statements(doc) if any(a.startswith("s3:") for a in s["Action"])]
    assert s3
    for st in s3:
        assert "s3:*" not in st["Action"] and st["Resource"] != "*"
        for resource in st["Resource"]:
            assert resource == "arn:aws:s3:::nlp-bucket" or resource.startswith("arn:aws:s3:::nlp-bucket/team/proj/")
    [listing] = [s for s in s3 if s["Action"] == ["s3:ListBucket"]]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["team/proj", "team/proj/*"]}}
    deletes = [r for s in s3 if "s3:DeleteObject" in s["Action"] for r in s["Resource"]]
    if kind == "launcher":  # sync --delete's groups and doctor's test object, not the whole prefix
        assert sorted(deletes) == sorted(f"arn:aws:s3:::nlp-bucket/team/proj/{f}/*" for f in
                                         (".multitype-doctor", "code", "configs", "data", "figures", "models",
                                          "results", "runs"))
    else:  # checkpoint rotation and replaced model folders only
        assert sorted(deletes) == ["arn:aws:s3:::nlp-bucket/team/proj/models/checkpoints/*",
                                   "arn:aws:s3:::nlp-bucket/team/proj/models/final/*"]
    assert iam.unknown_actions(doc) == []


def test_launcher_limits_jobs_passrole_and_instances() -> None:
    by_sid = {s["Sid"]: s for s in _statements(iam.policy("launcher", _scope()))}
    jobs = "arn:aws:sagemaker:us-east-1:123456789012:training-job/multitype-*"
    assert by_sid["LaunchTrainingJobs"]["Resource"] == [jobs]
    assert by_sid["LaunchTrainingJobs"]["Condition"] == {"StringEquals": {"aws:RequestTag/multitype:project": "bbc-news"}}
    assert by_sid["ManageTrainingJobs"]["Resource"] == [jobs]
    assert by_sid["ListTrainingJobs"] == {"Sid": "ListTrainingJobs", "Effect": "Allow",
                                          "Action": ["sagemaker:ListTrainingJobs"], "Resource": "*"}
    # sagemaker deploy/undeploy/invoke: models, endpoint configs and endpoints named multitype-*, made with our tag
    sm = "arn:aws:sagemaker:us-east-1:123456789012"
    hosting = [f"{sm}:endpoint-config/multitype-*", f"{sm}:endpoint/multitype-*", f"{sm}:model/multitype-*"]
    assert by_sid["DeployEndpoints"]["Action"] == ["sagemaker:AddTags", "sagemaker:CreateEndpoint",
                                                   "sagemaker:CreateEndpointConfig", "sagemaker:CreateModel"]
    assert by_sid["DeployEndpoints"]["Resource"] == hosting
    assert by_sid["DeployEndpoints"]["Condition"] == by_sid["LaunchTrainingJobs"]["Condition"]
    assert by_sid["ManageEndpoints"]["Resource"] == hosting and "Condition" not in by_sid["ManageEndpoints"]
    assert by_sid["InvokeEndpoints"] == {"Sid": "InvokeEndpoints", "Effect": "Allow",
                                         "Action": ["sagemaker:InvokeEndpoint"], "Resource": [f"{sm}:endpoint/multitype-*"]}
    # the role ARN of project.yaml (launch_helpers: arn:aws:iam::123456789012:role/MultitypeSageMaker)
    assert by_sid["PassSageMakerRole"]["Resource"] == ["arn:aws:iam::123456789012:role/MultitypeSageMaker"]
    assert by_sid["PassSageMakerRole"]["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert by_sid["PassInstanceRole"]["Resource"] == ["arn:aws:iam::123456789012:role/multitype-ec2"]
    ours = {"StringEquals": {"aws:ResourceTag/multitype:project": "bbc-news"}}
    assert by_sid["StopOurInstances"]["Condition"] == ours
    assert by_sid["RunTaggedInstances"]["Condition"] == by_sid["LaunchTrainingJobs"]["Condition"]
    assert by_sid["TagOnLaunch"]["Condition"] == {"StringEquals": {"ec2:CreateAction": "RunInstances",
                                                                   "aws:RequestTag/multitype:project": "bbc-news"}}
    ec2 = "arn:aws:ec2:us-east-1:123456789012"
    for sid in ("RunTaggedInstances", "TagOnLaunch"):
        assert by_sid[sid]["Resource"] == [f"{ec2}:instance/*", f"{ec2}:spot-instances-request/*", f"{ec2}:volume/*"]
    # List actions have no resource-level permissions: "*", EC2's and Auto Scaling's held to the project's region
    wildcard = [a for s in by_sid.values() if s["Resource"] == "*" for a in s["Action"]]
    assert sorted(wildcard) == ["autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribePolicies",
                                "autoscaling:DescribeScalingActivities", "autoscaling:DescribeScheduledActions",
                                "ec2:DescribeImages", "ec2:DescribeInstanceTypes", "ec2:DescribeInstances",
                                "ec2:DescribeLaunchTemplateVersions", "ec2:DescribeSpotInstanceRequests",
                                "ec2:DescribeSpotPriceHistory", "pricing:GetProducts", "sagemaker:ListEndpoints",
                                "sagemaker:ListProcessingJobs", "sagemaker:ListTrainingJobs",
                                "sts:GetCallerIdentity"]
    # sagemaker prepare: processing jobs named multitype-*, created only with the project's tag
    processing = "arn:aws:sagemaker:us-east-1:123456789012:processing-job/multitype-*"
    assert by_sid["LaunchProcessingJobs"]["Resource"] == [processing] == by_sid["ManageProcessingJobs"]["Resource"]
    assert by_sid["LaunchProcessingJobs"]["Condition"] == by_sid["LaunchTrainingJobs"]["Condition"]
    assert by_sid["ManageProcessingJobs"]["Action"] == ["sagemaker:DescribeProcessingJob",
                                                        "sagemaker:StopProcessingJob"]
    assert by_sid["DescribeEc2"]["Condition"] == {"StringEquals": {"ec2:Region": "us-east-1"}}
    assert by_sid["DescribeServeTemplates"]["Condition"] == {"StringEquals": {"ec2:Region": "us-east-1"}}
    assert by_sid["DescribeServeGroups"]["Condition"] == {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}
    # the serving fleet: groups named multitype-*, created with the project's tag, changed only while they carry it
    groups = ["arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:*:autoScalingGroupName/multitype-*"]
    assert by_sid["CreateServeGroup"]["Resource"] == groups == by_sid["ManageServeGroup"]["Resource"]
    assert by_sid["CreateServeGroup"]["Condition"] == by_sid["RunTaggedInstances"]["Condition"]
    assert by_sid["ManageServeGroup"]["Condition"] == ours == by_sid["ChangeServeTemplate"]["Condition"]
    # budgets: read all (doctor looks for any budget with alerts), change only multitype-* (cost budget create)
    assert by_sid["ReadBudgets"]["Resource"] == ["arn:aws:budgets::123456789012:budget/*"]
    assert by_sid["CreateOurBudget"] == {"Sid": "CreateOurBudget", "Effect": "Allow",
                                         "Action": ["budgets:ModifyBudget"],
                                         "Resource": ["arn:aws:budgets::123456789012:budget/multitype-*"]}
    group = "arn:aws:logs:us-east-1:123456789012:log-group:/multitype/ec2"
    assert by_sid["ReadInstanceLogs"]["Action"] == ["logs:DescribeLogStreams", "logs:GetLogEvents"]
    assert by_sid["ReadInstanceLogs"]["Resource"] == [group, f"{group}:*"]


def test_job_roles_logs_and_image() -> None:
    sm = {s["Sid"]: s for s in _statements(iam.policy("sagemaker-role", _scope()))}
    group = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/TrainingJobs"
    assert sm["TrainingJobLogs"]["Resource"] == [group, f"{group}:*"]  # the reference's form and the long-used one
    assert sm["PullTrainingImage"]["Resource"] == ["arn:aws:ecr:us-east-1:763104351884:repository/pytorch-training"]
    assert sm["PullInferenceImage"]["Resource"] == ["arn:aws:ecr:us-east-1:763104351884:repository/pytorch-inference"]
    endpoints = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/multitype-*"
    assert sm["EndpointLogs"]["Resource"] == [endpoints, f"{endpoints}:*"]
    ec2 = {s["Sid"]: s for s in _statements(iam.policy("ec2-profile", _scope()))}
    group = "arn:aws:logs:us-east-1:123456789012:log-group:/multitype/ec2"
    assert ec2["InstanceLogs"]["Resource"] == [group, f"{group}:*"]
    assert ec2["InstanceLogs"]["Action"] == ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
    # the user data cancels its own persistent spot request: found in the region, cancelled when the project's
    assert ec2["FindOwnSpotRequest"] == {"Sid": "FindOwnSpotRequest", "Effect": "Allow",
                                         "Action": ["ec2:DescribeSpotInstanceRequests"], "Resource": "*",
                                         "Condition": {"StringEquals": {"ec2:Region": "us-east-1"}}}
    assert ec2["CancelOwnSpotRequest"]["Resource"] == [
        "arn:aws:ec2:us-east-1:123456789012:spot-instances-request/*"]
    assert ec2["CancelOwnSpotRequest"]["Condition"] == {
        "StringEquals": {"aws:ResourceTag/multitype:project": "bbc-news"}}
    assert not any(a.startswith(("ecr:", "sagemaker:", "iam:")) for a in iam.actions(iam.policy("ec2-profile",
                                                                                                _scope())))
    assert {a for a in iam.actions(iam.policy("ec2-profile", _scope())) if a.startswith("ec2:")} == {
        "ec2:DescribeSpotInstanceRequests", "ec2:CancelSpotInstanceRequests"}


def test_unknown_action_is_caught() -> None:
    doc = {"Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjects", "sagemaker:LaunchJob"],
                          "Resource": "*"}]}
    assert iam.unknown_actions(doc) == ["s3:GetObjects", "sagemaker:LaunchJob"]


# parliament's findings that are inherent to what multitype does, each accepted for a reason
ACCEPTED = {
    # SageMaker must pull the Deep Learning Container: ECR hands out a registry token, Resource * only
    "sagemaker-role": {"CREDENTIALS_EXPOSURE"},
    "ec2-profile": set(),
    # PassRole (one role, one service) + RunInstances is what launching with an instance profile is;
    # PutLifecycleConfiguration is `sync archive`; RunInstances is split in two statements on purpose so
    # the tag condition applies only to the resources it creates (AWS's documented pattern)
    "launcher": {"RESOURCE_POLICY_PRIVILEGE_ESCALATION", "PERMISSIONS_MANAGEMENT_ACTIONS", "PRIVILEGE_ESCALATION",
                 "RESOURCE_MISMATCH"},
    # a trust policy has no Resource; parliament lints identity policies
    "trust": {"MALFORMED"},
}


@pytest.mark.parametrize("kind", iam.KINDS)
def test_parliament_finds_nothing_unexpected(kind: str) -> None:
    import parliament  # a test dependency: a missing one fails here rather than skipping the lint
    doc = iam.policy(kind, _scope())
    findings = parliament.analyze_policy_string(json.dumps(doc), include_community_auditors=True).findings
    assert {f.issue for f in findings} == ACCEPTED[kind], [(f.issue, f.detail) for f in findings]
    assert not any(f.issue in ("UNKNOWN_ACTION", "UNKNOWN_PREFIX", "UNKNOWN_CONDITION_FOR_ACTION")
                   for f in findings)


# --- CLI ----------------------------------------------------------------------------------------------
def test_cli_prints_policy_with_flags_overriding(cli, configs: Path, aws_env) -> None:
    res = cli("iam", "policy", "ec2-profile", "--bucket", "other", "--prefix", "p/q/", "--config-dir", configs)
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    resources = {r for s in doc["Statement"] for r in (s["Resource"] if isinstance(s["Resource"], list)
                                                        else [s["Resource"]])}
    assert "arn:aws:s3:::other/p/q/*" in resources and not any("nlp-bucket" in r for r in resources)
    assert "arn:aws:logs:us-east-1:123456789012:log-group:/multitype/ec2:*" in resources  # account from STS (moto)
    trust = json.loads(cli("iam", "policy", "trust", "--for", "ec2", "--config-dir", configs).stdout)
    assert trust["Statement"] == [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                   "Action": "sts:AssumeRole"}]


def test_cli_without_credentials_uses_a_wildcard_account(cli, configs: Path, monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    res = cli("iam", "policy", "sagemaker-role", "--config-dir", configs)
    assert res.exit_code == 0, res.stderr
    assert "account id in ARNs is '*'" in res.stderr
    assert "arn:aws:logs:us-east-1:*:log-group:/aws/sagemaker/TrainingJobs:*" in res.stdout


@pytest.mark.parametrize("args, message", [
    (["iam", "policy", "admin"], "error: unknown policy 'admin'; choose one of sagemaker-role, ec2-profile, "
                                 "launcher, trust"),
    (["iam", "policy", "trust", "--for", "lambda"], "error: --for takes one of sagemaker, ec2, got 'lambda'"),
    (["iam", "policy", "launcher", "--bucket", "s3://b/p"], "error: --bucket takes a bucket name, got 's3://b/p'"),
    (["iam", "policy", "trust", "--create"], "error: a trust policy is created with its role"),
])
def test_cli_bad_input(cli, configs: Path, args: list[str], message: str) -> None:
    res = cli(*args, "--config-dir", configs)
    assert res.exit_code == 2 and res.stderr.startswith(message), res.stderr


def test_cli_no_bucket_configured(cli, tmp_path: Path) -> None:
    configs = write_configs(tmp_path / "local", project=project_yaml(None))
    res = cli("iam", "policy", "launcher", "--config-dir", configs)
    assert res.exit_code == 2
    assert res.stderr.strip() == ("error: no S3 bucket to scope the policy to: set storage.remote "
                                  "(s3://bucket/prefix) in project.yaml or pass --bucket")


# --- --create against moto IAM ----------------------------------------------------------------------
def test_create_is_idempotent_and_matches_the_printed_policy(cli, configs: Path, aws_env) -> None:
    client = aws.client("iam", AwsConfig())
    for attempt in range(2):
        res = cli("iam", "policy", "sagemaker-role", "--create", "--json", "--config-dir", configs)
        assert res.exit_code == 0, res.stderr
        out = json.loads(res.stdout)
        assert out["role_arn"] == "arn:aws:iam::123456789012:role/MultitypeSageMaker"
        assert out["changes"][0] == ("created role MultitypeSageMaker" if attempt == 0
                                     else "updated role MultitypeSageMaker")
        res = cli("iam", "policy", "ec2-profile", "--create", "--json", "--config-dir", configs)
        assert res.exit_code == 0, res.stderr
        assert json.loads(res.stdout)["instance_profile_arn"] == \
            "arn:aws:iam::123456789012:instance-profile/multitype-ec2"
    roles = [r["RoleName"] for r in client.list_roles()["Roles"]]
    assert sorted(roles) == ["MultitypeSageMaker", "multitype-ec2"]
    profile = client.get_instance_profile(InstanceProfileName="multitype-ec2")["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == ["multitype-ec2"]
    assert client.list_role_policies(RoleName="MultitypeSageMaker")["PolicyNames"] == ["multitype"]
    stored = client.get_role_policy(RoleName="MultitypeSageMaker", PolicyName="multitype")["PolicyDocument"]
    stored = json.loads(stored) if isinstance(stored, str) else stored
    printed = json.loads(cli("iam", "policy", "sagemaker-role", "--config-dir", configs).stdout)
    assert iam.canonical(stored) == iam.canonical(printed)
    trust = client.get_role(RoleName="multitype-ec2")["Role"]["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert iam.canonical(trust) == iam.canonical(iam.trust_policy("ec2"))
    scope = _scope()
    assert iam.role_status(scope, AwsConfig(), "sagemaker")[0] and iam.role_status(scope, AwsConfig(), "ec2")[0]


def test_create_launcher_managed_policy_gets_new_versions(cli, configs: Path, aws_env) -> None:
    client = aws.client("iam", AwsConfig())
    arn = "arn:aws:iam::123456789012:policy/multitype-launcher"
    for attempt in range(6):  # IAM keeps five versions: the oldest non-default one makes room
        res = cli("iam", "policy", "launcher", "--create", "--json", "--config-dir", configs)
        assert res.exit_code == 0, res.stderr
        assert json.loads(res.stdout)["policy_arn"] == arn
    versions = client.list_policy_versions(PolicyArn=arn)["Versions"]
    assert len(versions) == 5 and sum(v["IsDefaultVersion"] for v in versions) == 1
    default = client.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    doc = client.get_policy_version(PolicyArn=arn, VersionId=default)["PolicyVersion"]["Document"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    assert iam.canonical(doc) == iam.canonical(iam.policy("launcher", _scope()))
