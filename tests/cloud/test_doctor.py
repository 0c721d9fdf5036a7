"""``multitype doctor`` on a clean and on a broken setup: moto (IAM, STS, Budgets, EC2, SageMaker) and SeaweedFS.

The clean setup is built with the project's own commands: ``prepare``,
``train baseline`` and ``report`` on a local root, ``sync push --only code``,
``iam policy ... --create``, ``cost budget create --email``. The broken one
has no results, an audit reporting cross-split duplicates, an uncommitted and
unpushed code tree, no roles, no budget, a running instance and a persistent
spot request of the project (and another project's, not reported) and a
running job (moto marks jobs Completed at once: the ListTrainingJobs answer is
edited at our client, the request still goes to moto).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from multitype.cloud import aws
from multitype.config import AwsConfig
from multitype.storage import Storage
from tests.cloud.jobs_helpers import create_job, hook
from tests.cloud.launch_helpers import project_yaml
from tests.conftest import make_bbc_subset, write_configs

ACCOUNT = "123456789012"
NAMES = ["configs valid", "local results", "data audit clean", "code committed", "credentials and region",
         "code pushed", "bucket round trip", "SageMaker role", "EC2 role and instance profile", "budget alert",
         "nothing left running"]


def _git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
                   check=True, capture_output=True, timeout=30)


def _project(tmp_path: Path, remote: str | None) -> Path:
    """A git checkout with its own code (src/), configs, and a local root in it (outputs ignored by git)."""
    proj = tmp_path / "proj"
    (proj / "src" / "mypkg").mkdir(parents=True)
    (proj / "src" / "mypkg" / "__init__.py").write_text("VALUE = 1\n")
    (proj / ".gitignore").write_text("".join(f"/{d}/\n" for d in ("data", "results", "models", "runs", "figures",
                                                                  ".multitype")))
    write_configs(proj / "configs", project=project_yaml(remote))
    _git(proj, "init", "-q")
    _git(proj, "add", "-A")
    _git(proj, "commit", "-q", "-m", "init")
    return proj


def _doctor(cli, proj: Path) -> tuple[int, dict[str, dict[str, str]]]:
    res = cli("doctor", "--json", "--local", proj, "--root", proj, "--config-dir", proj / "configs")
    checks = json.loads(res.stdout)
    assert [c["name"] for c in checks] == NAMES
    return res.exit_code, {c["name"]: c for c in checks}


@pytest.mark.slow
def test_clean_setup_passes_everything(cli, s3_server, aws_env, tmp_path: Path) -> None:
    remote = f"s3://{s3_server.make_bucket('doctor')}/proj"
    proj = _project(tmp_path, remote)
    bbc = make_bbc_subset(tmp_path / "bbc", per_class=12, seed=1)
    common = ("--root", proj, "--config-dir", proj / "configs")
    for args in (("prepare", "--input", bbc), ("train", "baseline"), ("report",)):
        res = cli(*args, *common)
        assert res.exit_code == 0, (args, res.stderr)
    res = cli("sync", "push", "--only", "code", "--local", proj, "--config-dir", proj / "configs")
    assert res.exit_code == 0, res.stderr
    for kind in ("sagemaker-role", "ec2-profile"):
        res = cli("iam", "policy", kind, "--create", "--config-dir", proj / "configs")
        assert res.exit_code == 0, res.stderr
    res = cli("cost", "budget", "create", "--amount", "50", "--email", "ops@example.com", *common)
    assert res.exit_code == 0, res.stderr

    code, checks = _doctor(cli, proj)
    assert {n: c["status"] for n, c in checks.items()} == {n: "PASS" for n in NAMES}, checks
    assert code == 0
    assert checks["credentials and region"]["reason"].startswith(f"account {ACCOUNT} as ")
    assert checks["budget alert"]["reason"] == "budget multitype-bbc-news-monthly has alerts"
    assert checks["nothing left running"]["reason"] == ("no instance or spot request tagged multitype:project=bbc-news "
                                                        "and no multitype-* job running")
    assert s3_server.list_keys(remote.split("/")[2], "proj/.multitype-doctor/") == []  # the test object is gone
    table = cli("doctor", "--local", proj, "--root", proj, "--config-dir", proj / "configs")
    assert table.exit_code == 0 and "PASS" in table.stdout and "FAIL" not in table.stdout


def _running_job(parsed: dict[str, Any], **_: Any) -> None:
    for job in parsed.get("TrainingJobSummaries", []):
        job["TrainingJobStatus"] = "InProgress"


def test_broken_setup_names_each_failure_and_its_fix(cli, s3_server, aws_env, tmp_path: Path) -> None:
    remote = f"s3://{s3_server.make_bucket('doctor')}/proj"
    proj = _project(tmp_path, remote)
    Storage(str(proj)).write_json("data/processed/audit.json", {
        "cross_split": {"exact_duplicates": 2, "near_duplicates": 1, "exact_examples": [], "near_examples": []}})
    (proj / "src" / "mypkg" / "__init__.py").write_text("VALUE = 2\n")  # not committed, not pushed
    ec2 = aws.client("ec2", AwsConfig())
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.medium", TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": "multitype:project", "Value": "bbc-news"}]}])["Instances"][0]
    ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, TagSpecifications=[  # another project's: not ours
        {"ResourceType": "instance", "Tags": [{"Key": "multitype:project", "Value": "other"}]}])
    requests = [ec2.request_spot_instances(  # a persistent request would start instance after instance
        InstanceCount=1, Type=kind, LaunchSpecification={"ImageId": image, "InstanceType": "g5.xlarge"},
        TagSpecifications=[{"ResourceType": "spot-instances-request",
                            "Tags": [{"Key": "multitype:project", "Value": project}]}],
    )["SpotInstanceRequests"][0]["SpotInstanceRequestId"]
        for kind, project in (("persistent", "bbc-news"), ("persistent", "other"), ("one-time", "bbc-news"))]
    create_job("multitype-minilm-20261201T101500Z")
    create_job("someone-elses-job")

    with hook("sagemaker", "after-call.sagemaker.ListTrainingJobs", _running_job):
        code, checks = _doctor(cli, proj)
    assert code == 1
    status = {n: c["status"] for n, c in checks.items()}
    assert status == {**{n: "FAIL" for n in NAMES},
                      "configs valid": "PASS", "credentials and region": "PASS", "bucket round trip": "PASS"}, checks
    expect = {
        "local results": (f"no metrics files under {proj}/results", "multitype run"),
        "data audit clean": ("2 exact and 1 near duplicate(s) across splits",
                             "set leakage.policy: drop in data_config.yaml, then multitype prepare"),
        "code committed": (f"1 uncommitted change(s) in {proj}", "git add -A && git commit"),
        "SageMaker role": ("role MultitypeSageMaker does not exist", "multitype iam policy sagemaker-role --create"),
        "EC2 role and instance profile": ("role multitype-ec2 does not exist",
                                          "multitype iam policy ec2-profile --create"),
        "budget alert": (f"no AWS budget in account {ACCOUNT}",
                         "multitype cost budget create --amount USD --email ADDR"),
        "nothing left running": (f"still running: instance(s) {instance['InstanceId']}; spot request(s) "
                                 f"{requests[0]} (would start instances); job(s) multitype-minilm-20261201T101500Z",
                                 f"multitype ec2 terminate {instance['InstanceId']}; aws ec2 "
                                 f"cancel-spot-instance-requests --spot-instance-request-ids {requests[0]}; "
                                 "multitype sagemaker stop multitype-minilm-20261201T101500Z"),
    }
    for name, (reason, fix) in expect.items():
        assert (checks[name]["reason"], checks[name]["fix"]) == (reason, fix), name
    pushed = checks["code pushed"]
    assert pushed["reason"].startswith(f"4 code file(s) differ from {remote}/code/") or \
        pushed["reason"].split(" code file(s) differ from ")[1].startswith(f"{remote}/code/"), pushed
    assert pushed["fix"] == "multitype sync push --only code"


def test_a_budget_without_alerts_fails(cli, aws_env, tmp_path: Path) -> None:
    """'cost budget create' without --email makes a budget AWS cannot alert anyone about: not enough."""
    proj = _project(tmp_path, None)
    common = ("--root", proj, "--config-dir", proj / "configs")
    assert cli("cost", "budget", "create", "--amount", "50", *common).exit_code == 0
    _, checks = _doctor(cli, proj)
    assert (checks["budget alert"]["status"], checks["budget alert"]["reason"]) == (
        "FAIL", "budget(s) multitype-bbc-news-monthly have no alert")
    fix = checks["budget alert"]["fix"]
    assert fix == ("multitype cost budget create --amount USD --email ADDR --name multitype-bbc-news-alerts (or add "
                   "an alert in the Billing console)")
    assert cli("cost", "budget", "create", "--amount", "50", "--email", "ops@example.com", "--name",
               "multitype-bbc-news-alerts", *common).exit_code == 0  # the fix, as printed
    _, checks = _doctor(cli, proj)
    assert (checks["budget alert"]["status"], checks["budget alert"]["reason"]) == (
        "PASS", "budget multitype-bbc-news-alerts has alerts")


def test_roles_that_drifted_fail(cli, s3_server, aws_env, tmp_path: Path) -> None:
    remote = f"s3://{s3_server.make_bucket('doctor')}/proj"
    proj = _project(tmp_path, remote)
    for kind in ("sagemaker-role", "ec2-profile"):
        assert cli("iam", "policy", kind, "--create", "--config-dir", proj / "configs").exit_code == 0
    client = aws.client("iam", AwsConfig())
    client.put_role_policy(RoleName="MultitypeSageMaker", PolicyName="multitype", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    client.remove_role_from_instance_profile(InstanceProfileName="multitype-ec2", RoleName="multitype-ec2")
    _, checks = _doctor(cli, proj)
    assert checks["SageMaker role"]["reason"] == ("the policy multitype of role MultitypeSageMaker differs from "
                                                  "'iam policy sagemaker-role'")
    assert checks["EC2 role and instance profile"]["reason"] == \
        "instance profile multitype-ec2 does not hold role multitype-ec2"


def test_without_remote_or_credentials_the_aws_checks_skip(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    proj = _project(tmp_path, None)
    code, checks = _doctor(cli, proj)
    assert code == 1  # no results, no audit, no credentials
    assert checks["credentials and region"]["status"] == "FAIL"
    assert checks["credentials and region"]["reason"].startswith("no AWS credentials found")
    for name in ("code pushed", "bucket round trip"):
        assert (checks[name]["status"], checks[name]["reason"]) == ("SKIP", "no storage.remote in project.yaml")
    for name in ("SageMaker role", "EC2 role and instance profile", "budget alert", "nothing left running"):
        assert (checks[name]["status"], checks[name]["reason"]) == ("SKIP", "no usable AWS credentials")
    assert checks["code committed"]["status"] == "PASS"


def test_a_local_folder_that_is_not_there_is_bad_input(cli, tmp_path: Path) -> None:
    res = cli("doctor", "--local", tmp_path / "nope", "--config-dir", tmp_path / "configs")
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.strip() == (f"error: --local '{tmp_path / 'nope'}' is not a folder; pass the project folder "
                                  "(its git checkout)")


def test_region_typo_fails(cli, tmp_path: Path) -> None:
    proj = _project(tmp_path, None)
    write_configs(proj / "configs", project=project_yaml(None, region="us-east-l"))
    _, checks = _doctor(cli, proj)
    assert checks["credentials and region"]["status"] == "FAIL"
    assert checks["credentials and region"]["reason"] == "aws.region 'us-east-l' is not an AWS region with SageMaker"
