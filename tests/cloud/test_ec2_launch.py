"""``multitype ec2 launch`` against moto (EC2, IAM, STS) and SeaweedFS (S3).

The request is captured at our client layer, on the EC2 client launch uses:
botocore's ``provide-client-params.ec2.RunInstances`` (the parameters as we
built them) and ``before-call.ec2.RunInstances`` (the serialized form fields on
the wire, where botocore has base64-encoded the user data). Both are compared
with what AWS must get; the instance must then exist in moto as asked. Bad
input must leave moto without an instance and the bucket empty.
"""

from __future__ import annotations

import base64
import email
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from multitype.cloud import aws
from multitype.cloud.ec2.launch import EVERY_BOOT_CLOUD_CONFIG
from multitype.cloud.ec2.userdata import render_user_data
from multitype.config import AwsConfig
from tests.cloud import ec2_helpers as h
from tests.conftest import write_configs

OLD, NEW = "2025-03-01T10:00:00", "2025-06-01T10:00:00"


class Env:
    def __init__(self, s3_server: Any, tmp_path: Path) -> None:
        self.s3 = s3_server
        self.tmp = tmp_path
        self.bucket = s3_server.make_bucket("ec2")
        self.remote = f"s3://{self.bucket}/proj"
        self.root, self.configs = h.make_project(tmp_path, self.remote)
        self.sent: list[dict[str, Any]] = []   # RunInstances parameters as built
        self.wire: list[dict[str, Any]] = []   # RunInstances form fields as sent
        self.images: list[dict[str, Any]] = []  # DescribeImages parameters

    def args(self, *extra: str) -> list[str]:
        return ["ec2", "launch", *extra, "--root", str(self.root), "--config-dir", str(self.configs)]

    def configure(self, **project: Any) -> None:
        write_configs(self.configs, project=h.project_yaml(self.remote, **project))

    def keys(self) -> list[str]:
        return self.s3.list_keys(self.bucket)


@pytest.fixture
def env(s3_server, aws_env, tmp_path: Path):
    e = Env(s3_server, tmp_path)
    h.make_instance_profile()
    e.old = h.register_image(h.DLAMI.format(date="20250301"), OLD)
    e.new = h.register_image(h.DLAMI.format(date="20250601"), NEW)
    client = aws.client("ec2", AwsConfig(region=h.REGION), max_attempts=1)  # the one RunInstances goes through
    lookups = aws.client("ec2", AwsConfig(region=h.REGION))

    def params(params: dict[str, Any], **_: Any) -> None:
        e.sent.append(json.loads(json.dumps(params)))

    def wire(params: dict[str, Any], **_: Any) -> None:
        e.wire.append(dict(params["body"]))

    def images(params: dict[str, Any], **_: Any) -> None:
        e.images.append(json.loads(json.dumps(params)))

    client.meta.events.register("provide-client-params.ec2.RunInstances", params, unique_id="t-params")
    client.meta.events.register("before-call.ec2.RunInstances", wire, unique_id="t-wire")
    lookups.meta.events.register("provide-client-params.ec2.DescribeImages", images, unique_id="t-images")
    yield e
    client.meta.events.unregister("provide-client-params.ec2.RunInstances", unique_id="t-params")
    client.meta.events.unregister("before-call.ec2.RunInstances", unique_id="t-wire")
    lookups.meta.events.unregister("provide-client-params.ec2.DescribeImages", unique_id="t-images")


def bash_n(text: str, tmp_path: Path) -> None:
    script = tmp_path / "user-data.sh"
    script.write_text(text, encoding="utf-8")
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def tags(run_id: str, model: str = "minilm") -> list[dict[str, str]]:
    return [{"Key": "multitype:project", "Value": h.PROJECT}, {"Key": "multitype:run", "Value": run_id},
            {"Key": "multitype:model", "Value": model}, {"Key": "Name", "Value": run_id},
            {"Key": "team", "Value": "nlp"}]


def expected(env: Env, run_id: str, user_data: str, *, image: str, market: dict[str, Any] | None,
             volume: int = 100, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    resources = ["instance", "volume"] + (["spot-instances-request"] if market else [])
    request = {
        "ImageId": image, "InstanceType": "g5.xlarge", "MinCount": 1, "MaxCount": 1,
        "IamInstanceProfile": {"Name": h.PROFILE},
        "InstanceInitiatedShutdownBehavior": "terminate",
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 2},
        "BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Ebs": {
            "VolumeSize": volume, "VolumeType": "gp3", "DeleteOnTermination": True}}],
        "TagSpecifications": [{"ResourceType": r, "Tags": tags(run_id)} for r in resources],
        "UserData": user_data,
    }
    if market:
        request["InstanceMarketOptions"] = market
    return {**request, **(extra or {})}


def moto_instance(instance_id: str) -> dict[str, Any]:
    return h.ec2().describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def test_spot_one_time_launch(env: Env, cli) -> None:
    result = cli(*env.args("--model-name", "minilm", "--num-epochs", "2", "--budget", "100"))
    assert result.exit_code == 0, result.stderr
    [sent], [wire] = env.sent, env.wire
    run_id = sent["TagSpecifications"][0]["Tags"][1]["Value"]
    assert run_id.startswith("multitype-minilm-")
    script = render_user_data(root=env.remote, region=h.REGION, run_id=run_id,
                              train_args=["transformer", "--model-name", "minilm", "--num-epochs", "2"])
    assert sent == expected(env, run_id, script, image=env.new,
                            market={"MarketType": "spot", "SpotOptions": {"SpotInstanceType": "one-time"}})
    # on the wire: base64 of exactly that script, valid bash, no credential of this environment in it
    decoded = base64.b64decode(wire["UserData"]).decode("utf-8")
    assert decoded == script
    bash_n(decoded, env.tmp)
    for secret in (env.s3.env["AWS_SECRET_ACCESS_KEY"], env.s3.env["AWS_ACCESS_KEY_ID"]):
        assert secret not in decoded
    assert wire["InstanceMarketOptions.SpotOptions.SpotInstanceType"] == "one-time"
    assert wire["MetadataOptions.HttpTokens"] == "required"

    instance_id = result.stdout.strip()
    found = moto_instance(instance_id)
    assert found["ImageId"] == env.new and found["InstanceType"] == "g5.xlarge"
    assert found["MetadataOptions"]["HttpTokens"] == "required"
    assert found["IamInstanceProfile"]["Arn"].endswith(f":instance-profile/{h.PROFILE}")
    assert {t["Key"]: t["Value"] for t in found["Tags"]} == {t["Key"]: t["Value"] for t in tags(run_id)}
    shutdown = h.ec2().describe_instance_attribute(InstanceId=instance_id,
                                                   Attribute="instanceInitiatedShutdownBehavior")
    assert shutdown["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    assert result.stderr.splitlines()[0].startswith("estimate: ")  # one line, never wrapped
    assert result.stderr.splitlines()[-1].startswith(f"started {instance_id} for run {run_id} (g5.xlarge, spot "
                                                     "one-time, Deep Learning OSS")

    keys = env.keys()  # pushed before the start, as sagemaker launch does
    for key in ("data/processed/train_4class.csv", "data/processed/labels.json", "configs/project.yaml",
                "code/src/multitype/__init__.py", "code/requirements.txt"):
        assert f"proj/{key}" in keys, key
    record = json.loads((env.root / "runs" / "ec2" / f"{run_id}.json").read_text())
    assert record["instance_id"] == instance_id and record["market"] == "spot one-time"
    assert record["request"] == sent and record["log_group"] == "/multitype/ec2" and record["log_stream"] == run_id


def test_persistent_spot_with_network_key_ami_and_volume(env: Env, cli) -> None:
    ec2 = h.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="train", Description="train", VpcId=vpc)["GroupId"]
    ec2.create_key_pair(KeyName="train-key")
    arn = f"arn:aws:iam::{h.ACCOUNT}:instance-profile/{h.PROFILE}"
    result = cli(*env.args("--model-name", "minilm", "--restart-on-interruption", "--max-price", "0.5",
                           "--instance-profile", arn,
                           "--ami", env.old, "--volume-gb", "120", "--key-name", "train-key", "--subnet", subnet,
                           "--security-group", group))
    assert result.exit_code == 0, result.stderr
    [sent] = env.sent
    run_id = sent["TagSpecifications"][0]["Tags"][1]["Value"]
    market = {"MarketType": "spot", "SpotOptions": {"SpotInstanceType": "persistent",
                                                    "InstanceInterruptionBehavior": "stop", "MaxPrice": "0.5"}}
    assert sent == expected(env, run_id, sent["UserData"], image=env.old, market=market, volume=120,
                            extra={"KeyName": "train-key", "SubnetId": subnet, "SecurityGroupIds": [group],
                                   "IamInstanceProfile": {"Arn": arn}})
    # a stopped persistent instance restarts as the same instance: the script must run at every boot
    parts = {p.get_content_type(): p.get_payload(decode=True).decode("utf-8")
             for p in email.message_from_string(sent["UserData"]).walk() if not p.is_multipart()}
    assert parts["text/cloud-config"] == EVERY_BOOT_CLOUD_CONFIG
    assert parts["text/x-shellscript"] == render_user_data(
        root=env.remote, region=h.REGION, run_id=run_id, train_args=["transformer", "--model-name", "minilm"])
    bash_n(parts["text/x-shellscript"], env.tmp)
    found = moto_instance(result.stdout.strip())
    assert found["SubnetId"] == subnet and found["KeyName"] == "train-key"
    assert [g["GroupId"] for g in found["SecurityGroups"]] == [group]


def test_on_demand_and_newest_amazon_dlami(env: Env, cli) -> None:
    # newer, but not what the default may pick: the caller's own copy, another Amazon image, an ARM build
    h.register_image(h.DLAMI.format(date="20251001"), "2025-10-01T00:00:00", owner_alias=None)
    h.register_image("Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) 20251001", "2025-10-01T00:00:00")
    arm = h.register_image("Deep Learning ARM64 AMI OSS Nvidia Driver GPU PyTorch 2.7 (Ubuntu 22.04) 20251001",
                           "2025-10-01T00:00:00", architecture="arm64")
    result = cli(*env.args("--on-demand", "--model-name", "minilm"))
    assert result.exit_code == 0, result.stderr
    [sent] = env.sent
    run_id = sent["TagSpecifications"][0]["Tags"][1]["Value"]
    assert sent == expected(env, run_id, sent["UserData"], image=env.new, market=None)
    assert env.images == [{"Owners": ["amazon"], "Filters": [
        {"Name": "name", "Values": ["Deep Learning OSS Nvidia Driver AMI GPU PyTorch*"]},
        {"Name": "state", "Values": ["available"]}, {"Name": "architecture", "Values": ["x86_64"]}]}]
    assert "InstanceLifecycle" not in moto_instance(result.stdout.strip())
    # a Graviton type gets the ARM64 build (g5g is not in the price catalog; no budget, so nothing to refuse)
    graviton = cli(*env.args("--instance-type", "g5g.xlarge", "--dry-run"))
    assert graviton.exit_code == 0, graviton.stderr
    assert json.loads(graviton.stdout)["ImageId"] == arm


def test_instance_profile_without_a_role(env: Env, cli) -> None:
    aws.client("iam", AwsConfig(region=h.REGION)).create_instance_profile(InstanceProfileName="empty")
    env.configure(profile="empty")
    result = cli(*env.args())
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: instance profile 'empty' has no role, so the instance would have no credentials; add the role "
        "('multitype iam policy ec2-profile --create')")
    assert env.sent == [] and h.live_instances() == [] and env.keys() == []


def test_dry_run_prints_the_request_and_starts_nothing(env: Env, cli) -> None:
    result = cli(*env.args("--dry-run"))
    assert result.exit_code == 0, result.stderr
    request = json.loads(result.stdout)
    assert request["InstanceMarketOptions"]["SpotOptions"] == {"SpotInstanceType": "one-time"}
    assert request["ImageId"] == env.new
    assert env.sent == [] and h.live_instances() == [] and env.keys() == []
    assert not (env.root / "runs" / "ec2").exists()


def test_over_budget_is_refused_and_force_starts_it(env: Env, cli) -> None:
    from multitype.cloud import cost
    from multitype.project import open_project

    est = cost.estimate(open_project(str(env.root), str(env.configs), "test"), "minilm", "g5.xlarge", spot=True)
    assert est.usd > 0.01  # the catalog's EC2 start-up minutes alone cost more at g5.xlarge's spot price
    result = cli(*env.args("--budget", "0.01"))
    assert result.exit_code == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: the EC2 run of minilm on g5.xlarge (spot) is estimated at {cost.money(est.usd)}, "
                           "over the budget of $0.01"), line
    assert "--force" in line and cost.describe(est) in result.stderr  # the estimate is printed before the refusal
    assert env.sent == [] and h.live_instances() == [] and env.keys() == []

    # aws.budget_usd in project.yaml is the default budget
    text = (env.configs / "project.yaml").read_text().replace("budget_usd: null", "budget_usd: 0.01")
    (env.configs / "project.yaml").write_text(text)
    refused = cli(*env.args())
    assert refused.exit_code == 2 and "over the budget of $0.01" in refused.stderr
    assert h.live_instances() == [] and env.keys() == []
    forced = cli(*env.args("--force"))
    assert forced.exit_code == 0, forced.stderr
    assert [i["InstanceId"] for i in h.live_instances()] == [forced.stdout.strip()]


@pytest.mark.parametrize("case, flags, message", [
    ("type", ["--instance-type", "g5.xlarg"],
     "instance type 'g5.xlarg' is not an EC2 instance type; did you mean g5.xlarge"),
    ("sagemaker-type", ["--instance-type", "ml.g5.xlarge"], "EC2 names it 'g5.xlarge' (without SageMaker's 'ml.')"),
    ("max-price", ["--max-price", "5"], "--max-price 5 is above the on-demand price of g5.xlarge ($1.006/h"),
    ("ami", ["--ami", "ami-0123456789abcdef0"], "--ami / aws.ec2.ami 'ami-0123456789abcdef0': no such AMI in us-east-1"),
    ("budget-zero", ["--budget", "0"], "--budget must be above 0 USD, got 0"),
    ("budget-negative", ["--budget", "-5"], "--budget must be above 0 USD, got -5"),
    ("on-demand-persistent", ["--on-demand", "--restart-on-interruption"], "is a spot request"),
    ("volume", ["--volume-gb", "10"], "--volume-gb 10 is smaller than the AMI's root snapshot (15 GB"),
    ("unpriced", ["--instance-type", "g6.xlarge", "--budget", "10"],
     "no estimate: g6.xlarge has no price in the catalog"),
])
def test_bad_flags_launch_nothing(env: Env, cli, case: str, flags: list[str], message: str) -> None:
    result = cli(*env.args(*flags))
    assert result.exit_code == 2, (case, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1], (case, result.stderr)
    assert len([line for line in lines if line.startswith("error:")]) == 1
    assert env.sent == [] and h.live_instances() == [] and env.keys() == []


@pytest.mark.parametrize("case, project, message", [
    ("region", {"region": "us-est-1"}, "aws.region 'us-est-1' in project.yaml is not an AWS region with EC2; "
                                       "did you mean us-west-1, us-east-1, us-west-2?"),
    ("no-profile", {"profile": None}, "no instance profile for the instance: set aws.ec2_instance_profile"),
    ("unknown-profile", {"profile": "nope"}, "instance profile 'nope' (aws.ec2_instance_profile) does not exist"),
])
def test_bad_project_settings_launch_nothing(env: Env, cli, case: str, project: dict[str, Any],
                                             message: str) -> None:
    env.configure(**project)
    result = cli(*env.args())
    assert result.exit_code == 2, (case, result.stderr)
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert message in result.stderr.strip().splitlines()[-1], (case, result.stderr)
    assert env.sent == [] and h.live_instances() == [] and env.keys() == []


def test_no_dlami_in_the_region(env: Env, cli) -> None:
    from moto.backends import get_backend

    amis = get_backend("ec2")[h.ACCOUNT][h.REGION].amis
    for image_id in (env.old, env.new):
        amis[image_id].owner_alias = None  # now only the caller's own copies: not Amazon's
    result = cli(*env.args())
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: no Deep Learning AMI for PyTorch (Deep Learning OSS Nvidia Driver AMI GPU PyTorch*, owner amazon, "
        "x86_64) in us-east-1; pass --ami")
    assert env.sent == [] and h.live_instances() == [] and env.keys() == []


def test_root_on_s3_adds_the_code_and_configs(env: Env, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from multitype.sync import sync

    workdir = env.root.parent / "elsewhere"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    sync("push", local=env.root, remote=env.remote, only="data")
    before = set(env.keys())
    result = cli("ec2", "launch", "--root", env.remote, "--config-dir", env.configs)
    assert result.exit_code == 0, result.stderr
    [sent] = env.sent
    run_id = sent["TagSpecifications"][0]["Tags"][1]["Value"]
    added = sorted(set(env.keys()) - before)
    assert f"proj/runs/ec2/{run_id}.json" in added  # the record lives in the root
    assert {f"proj/configs/{n}" for n in ("data_config.yaml", "models_baseline.yaml", "models_transformer.yaml",
                                          "project.yaml")} <= set(added)
    assert "proj/code/src/multitype/cloud/ec2/launch.py" in added and "proj/code/requirements.txt" in added
    assert not [k for k in added if k.startswith("proj/data/")]  # the data was there already
    assert list(workdir.iterdir()) == []  # nothing staged in the working folder
    assert f"ROOT={env.remote}\n" in sent["UserData"]
