"""``multitype autoscale plan|apply|status|destroy`` against moto (EC2, Auto Scaling, IAM) and SeaweedFS (S3).

Every request is captured at our client layer (botocore's ``provide-client-params``
event, through ``tests/cloud/aws_recorder.py``): what ``apply`` sends must be,
request for request, the JSON ``plan`` printed just before; a second ``apply``
must send nothing that changes state; ``destroy`` must leave nothing; bad input
must be one line, exit 2, with nothing sent and nothing created.
"""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from multitype.cloud import aws
from multitype.config import AwsConfig
from tests.cloud import aws_recorder as rec
from tests.cloud import ec2_helpers as h
from tests.conftest import write_configs

READS = ("Describe", "Get", "List")


def mutations(calls: list[rec.Call]) -> list[dict[str, Any]]:
    """The state-changing EC2 and Auto Scaling requests our code made, as plan prints them."""
    return [{"service": c.service, "operation": c.operation, "request": c.params} for c in calls
            if c.ours and c.service in ("ec2", "autoscaling") and not c.operation.startswith(READS)]


class Fleet:
    def __init__(self, s3_server: Any, tmp_path: Path, cli: Any) -> None:
        self.s3, self.cli, self.tmp = s3_server, cli, tmp_path
        self.bucket = s3_server.make_bucket("fleet")
        self.remote = f"s3://{self.bucket}/proj"
        self.root, self.configs = h.make_project(tmp_path, self.remote, prepared=False)
        self.subnets = [s["SubnetId"] for s in h.ec2().describe_subnets()["Subnets"]][:2]
        self.name = f"multitype-{h.PROJECT}-serve"
        self.image = ""  # the Deep Learning AMI registered in moto

    def configure(self, **autoscale: Any) -> None:
        data = yaml.safe_load(h.project_yaml(self.remote))
        data["aws"]["autoscale"].update(autoscale)
        write_configs(self.configs, project=yaml.safe_dump(data, sort_keys=False))

    def run(self, command: str, *extra: str) -> Any:
        return self.cli("autoscale", command, *extra, "--root", str(self.root), "--config-dir", str(self.configs))

    def plan(self, *extra: str) -> list[dict[str, Any]]:
        res = self.run("plan", *extra)
        assert res.exit_code == 0, res.stderr
        return json.loads(res.stdout)

    def asg(self) -> Any:
        return aws.client("autoscaling", AwsConfig(region=h.REGION))

    def group(self) -> dict[str, Any] | None:
        found = self.asg().describe_auto_scaling_groups(AutoScalingGroupNames=[self.name])["AutoScalingGroups"]
        return found[0] if found else None

    def templates(self) -> list[dict[str, Any]]:
        return [t for t in h.ec2().describe_launch_templates()["LaunchTemplates"]]


@pytest.fixture
def fleet(s3_server, aws_env, tmp_path: Path, cli, moto_template_versions) -> Fleet:
    h.make_instance_profile()
    image = h.register_image(h.DLAMI.format(date="20250601"), "2025-06-01T10:00:00")
    f = Fleet(s3_server, tmp_path, cli)
    f.image = image
    f.configure(model="models/final/logreg", subnets=f.subnets, spot_share=0.7,
                schedules=["0 8 * * MON-FRI=4", "0 20 * * *=1"])
    return f


def test_apply_sends_exactly_the_plan_then_nothing(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    planned = fleet.plan()
    assert [(s["service"], s["operation"]) for s in planned] == [
        ("ec2", "CreateLaunchTemplate"), ("autoscaling", "CreateAutoScalingGroup"),
        ("autoscaling", "PutScalingPolicy"), ("autoscaling", "PutScheduledUpdateGroupAction"),
        ("autoscaling", "PutScheduledUpdateGroupAction")]
    assert fleet.templates() == [] and fleet.group() is None  # plan changed nothing

    with rec.recording(monkeypatch) as calls:
        res = fleet.run("apply")
    assert res.exit_code == 0, res.stderr
    assert mutations(calls) == planned
    assert f"{fleet.name}: 5 change(s) sent" in res.stderr
    assert any(k.startswith("proj/code/src/multitype/") for k in fleet.s3.list_keys(fleet.bucket))

    # what AWS now holds is what was asked for
    data = h.ec2().describe_launch_template_versions(LaunchTemplateName=fleet.name,
                                                     Versions=["$Latest"])["LaunchTemplateVersions"][0][
        "LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["IamInstanceProfile"] == {"Name": h.PROFILE}
    script = base64.b64decode(data["UserData"]).decode()
    assert f"MODEL=s3://{fleet.bucket}/proj/models/final/logreg" in script
    assert "ExecStart=$PY -m multitype serve --model $MODEL --host 0.0.0.0 --port $PORT" in script
    group = fleet.group()
    assert group is not None
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (1, 5, 2)
    assert set(group["VPCZoneIdentifier"].split(",")) == set(fleet.subnets)
    mixed = group["MixedInstancesPolicy"]
    assert mixed["InstancesDistribution"] == {"OnDemandBaseCapacity": 0, "OnDemandPercentageAboveBaseCapacity": 30,
                                              "SpotAllocationStrategy": "price-capacity-optimized"}
    assert [o["InstanceType"] for o in mixed["LaunchTemplate"]["Overrides"]] == [
        "c5.xlarge", "c5a.xlarge", "c6i.xlarge", "c6a.xlarge"]
    assert {(t["Key"], t["Value"], t["PropagateAtLaunch"]) for t in group["Tags"]} >= {
        ("multitype:project", h.PROJECT, True), ("team", "nlp", True)}
    policy = fleet.asg().describe_policies(AutoScalingGroupName=fleet.name)["ScalingPolicies"]
    assert [(p["PolicyName"], p["PolicyType"], p["EstimatedInstanceWarmup"], p["TargetTrackingConfiguration"])
            for p in policy] == [("multitype-cpu-target", "TargetTrackingScaling", 300, {
                "PredefinedMetricSpecification": {"PredefinedMetricType": "ASGAverageCPUUtilization"},
                "TargetValue": 60.0})]
    actions = fleet.asg().describe_scheduled_actions(AutoScalingGroupName=fleet.name)["ScheduledUpdateGroupActions"]
    assert sorted((a["ScheduledActionName"], a["Recurrence"], a["DesiredCapacity"]) for a in actions) == [
        ("multitype-0_20_*_*_*", "0 20 * * *", 1), ("multitype-0_8_*_*_MON-FRI", "0 8 * * MON-FRI", 4)]

    # idempotent: the plan is empty and a second apply sends nothing that changes state
    assert fleet.plan() == []
    with rec.recording(monkeypatch) as again:
        res = fleet.run("apply")
    assert res.exit_code == 0, res.stderr
    assert mutations(again) == []
    assert not [c for c in again if c.service == "s3" and c.operation.startswith("Put")]
    assert f"{fleet.name}: up to date" in res.stderr


def test_a_changed_setting_sends_only_the_difference(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    assert fleet.run("apply").exit_code == 0
    changed = ["--instance-type", "c5.2xlarge", "--max", "6", "--target-cpu", "50", "--schedule", "0 8 * * MON-FRI=5"]
    planned = fleet.plan(*changed)
    with rec.recording(monkeypatch) as calls:
        res = fleet.run("apply", *changed)
    assert res.exit_code == 0, res.stderr
    assert mutations(calls) == planned
    by_op = {s["operation"]: s["request"] for s in planned}
    assert [s["operation"] for s in planned] == [
        "CreateLaunchTemplateVersion", "UpdateAutoScalingGroup", "PutScalingPolicy",
        "PutScheduledUpdateGroupAction", "DeleteScheduledAction"]
    assert by_op["CreateLaunchTemplateVersion"]["LaunchTemplateData"]["InstanceType"] == "c5.2xlarge"
    update = by_op["UpdateAutoScalingGroup"]
    assert set(update) == {"AutoScalingGroupName", "MaxSize", "MixedInstancesPolicy"}  # not DesiredCapacity
    assert update["MaxSize"] == 6
    assert by_op["PutScalingPolicy"]["TargetTrackingConfiguration"]["TargetValue"] == 50.0
    assert by_op["DeleteScheduledAction"]["ScheduledActionName"] == "multitype-0_20_*_*_*"
    versions = h.ec2().describe_launch_templates(LaunchTemplateNames=[fleet.name])["LaunchTemplates"][0]
    assert versions["LatestVersionNumber"] == 2
    assert fleet.plan(*changed) == []


def test_status_shows_the_group(fleet: Fleet) -> None:
    assert fleet.run("apply").exit_code == 0
    res = fleet.run("status", "--json")
    assert res.exit_code == 0, res.stderr
    info = json.loads(res.stdout)
    assert (info["name"], info["min"], info["max"], info["desired"]) == (fleet.name, 1, 5, 2)
    assert info["policy"] == {"name": "multitype-cpu-target", "type": "TargetTrackingScaling",
                              "metric": "ASGAverageCPUUtilization", "target": 60.0, "warmup": 300}
    assert info["launch_template"] == fleet.name and info["template_version"] == "$Latest"
    assert {a["recurrence"] for a in info["schedules"]} == {"0 8 * * MON-FRI", "0 20 * * *"}
    assert isinstance(info["instances"], list) and isinstance(info["activities"], list)
    text = fleet.run("status")
    assert text.exit_code == 0
    assert f"group {fleet.name} ({h.REGION}): desired 2, min 1, max 5" in text.stdout
    assert "policy: multitype-cpu-target ASGAverageCPUUtilization target 60, warm-up 300 s" in text.stdout


def test_destroy_asks_then_leaves_nothing(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    assert fleet.run("apply").exit_code == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    said_no = fleet.run("destroy")
    assert said_no.exit_code == 1 and "nothing destroyed" in said_no.stderr
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # no answer at all: never a yes
    refused = fleet.run("destroy")
    assert refused.exit_code == 2
    assert refused.stderr.strip().splitlines()[-1] == "error: autoscale destroy needs a 'y' answer or --yes"
    assert fleet.group() is not None and len(fleet.templates()) == 1
    with rec.recording(monkeypatch) as calls:
        res = fleet.run("destroy", "--yes")
    assert res.exit_code == 0, res.stderr
    assert [(m["operation"], m["request"].get("ScheduledActionName") or m["request"].get("PolicyName"))
            for m in mutations(calls)] == [
        ("DeleteScheduledAction", "multitype-0_8_*_*_MON-FRI"), ("DeleteScheduledAction", "multitype-0_20_*_*_*"),
        ("DeletePolicy", "multitype-cpu-target"), ("DeleteAutoScalingGroup", None), ("DeleteLaunchTemplate", None)]
    assert next(m for m in mutations(calls) if m["operation"] == "DeleteAutoScalingGroup")["request"][
        "ForceDelete"] is True
    assert fleet.group() is None and fleet.templates() == []
    assert fleet.asg().describe_policies(AutoScalingGroupName=fleet.name)["ScalingPolicies"] == []
    assert fleet.asg().describe_scheduled_actions(AutoScalingGroupName=fleet.name)[
        "ScheduledUpdateGroupActions"] == []
    again = fleet.run("destroy", "--yes")
    assert again.exit_code == 0 and "nothing to destroy" in again.stderr
    gone = fleet.run("status")
    assert gone.exit_code == 2 and f"no Auto Scaling group {fleet.name}" in gone.stderr


@pytest.mark.parametrize("args, message", [
    (["--instance-type", "c5.xlarg"], "instance type 'c5.xlarg' is not an EC2 instance type; did you mean"),
    (["--instance-types", "c5.xlarge,m5.huge"], "instance type 'm5.huge' is not an EC2 instance type"),
    (["--min", "3", "--desired", "2"], "min <= desired <= max, got --min 3 --desired 2 --max 5"),
    (["--max", "1"], "min <= desired <= max, got --min 1 --desired 2 --max 1"),
    (["--spot-share", "1.5"], "--spot-share 1.5 must be in [0, 1]"),
    (["--target-cpu", "0"], "--target-cpu 0 must be in (0, 100]"),
    (["--target-cpu", "120"], "--target-cpu 120 must be in (0, 100]"),
    (["--schedule", "0 8 * MON-FRI=4"], "cron '0 8 * MON-FRI' has 4 fields; it needs 5"),
    (["--schedule", "61 8 * * *=2"], "the minute field '61' is not valid (0-59"),
    (["--schedule", "0 8 * * FUN=2"], "the day of week field 'FUN' is not valid"),
    (["--schedule", "0 8 * * *"], "must be 'CRON=DESIRED'"),
    (["--schedule", "0 8 * * *=9"], "desired 9 must lie within --min 1 and --max 5"),
    (["--subnets", "subnet-1,vpc-0abc"], "subnet 'vpc-0abc' is not a subnet id"),
    (["--security-group", "default"], "security group 'default' is not a security group id"),
    (["--model", "/home/me/models/final/logreg"], "the instances read the model from S3"),
    (["--model", "models/../../secrets"], "the instances read the model from S3"),
    (["--name", "a b"], "--name 'a b' must be 3-128 letters"),
])
@pytest.mark.parametrize("command", ["plan", "apply"])
def test_bad_input_is_one_line_and_sends_nothing(fleet: Fleet, monkeypatch: pytest.MonkeyPatch, command: str,
                                                 args: list[str], message: str) -> None:
    with rec.recording(monkeypatch) as calls:
        res = fleet.run(command, *args)
    assert res.exit_code == 2, res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert calls == []  # checked before any AWS call
    assert fleet.group() is None and fleet.templates() == []
    assert fleet.s3.list_keys(fleet.bucket) == []


def test_every_problem_is_named_at_once(fleet: Fleet) -> None:
    res = fleet.run("plan", "--spot-share", "-1", "--target-cpu", "0", "--schedule", "bad=1")
    assert res.exit_code == 2
    line = res.stderr.strip()
    for part in ("--spot-share -1", "--target-cpu 0", "cron 'bad' has 1 fields"):
        assert part in line


def test_missing_settings_and_aws_refusals(fleet: Fleet) -> None:
    fleet.configure(model=None, subnets=[])
    res = fleet.run("plan")
    assert res.exit_code == 2
    assert "no subnets for the group: pass --subnets" in res.stderr and "no model to serve: pass --model" in res.stderr
    res = fleet.run("plan", "--model", "models/final/logreg", "--subnets", fleet.subnets[0],
                    "--instance-profile", "missing-profile")
    assert res.exit_code == 2
    assert "instance profile 'missing-profile' (aws.ec2_instance_profile) does not exist" in res.stderr
    assert fleet.templates() == [] and fleet.group() is None


def test_spot_types_of_another_architecture_are_refused(fleet: Fleet) -> None:
    res = fleet.run("apply", "--instance-types", "c5.xlarge,c6g.xlarge")
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        f"error: the AMI {fleet.image} is built for x86_64, but c6g.xlarge (arm64) cannot boot it; give "
        "--instance-types of one architecture"]
    assert fleet.group() is None and fleet.templates() == [] and fleet.s3.list_keys(fleet.bucket) == []


def test_project_yaml_defaults_and_on_demand_only(fleet: Fleet) -> None:
    fleet.configure(model=f"s3://{fleet.bucket}/proj/models/final/logreg", subnets=fleet.subnets,
                    instance_type="m5.large", min_size=2, max_size=4, desired=3, target_cpu=70.0,
                    security_groups=["sg-0123456789abcdef0"])
    planned = fleet.plan()
    create = next(s["request"] for s in planned if s["operation"] == "CreateAutoScalingGroup")
    assert create["LaunchTemplate"] == {"LaunchTemplateName": fleet.name, "Version": "$Latest"}
    assert "MixedInstancesPolicy" not in create
    assert (create["MinSize"], create["MaxSize"], create["DesiredCapacity"]) == (2, 4, 3)
    assert (create["HealthCheckType"], create["HealthCheckGracePeriod"], create["DefaultCooldown"]) == ("EC2", 300, 300)
    data = next(s["request"] for s in planned if s["operation"] == "CreateLaunchTemplate")["LaunchTemplateData"]
    assert data["InstanceType"] == "m5.large" and data["SecurityGroupIds"] == ["sg-0123456789abcdef0"]
    policy = next(s["request"] for s in planned if s["operation"] == "PutScalingPolicy")
    assert policy["TargetTrackingConfiguration"]["TargetValue"] == 70.0
    assert not any(s["operation"] == "PutScheduledUpdateGroupAction" for s in planned)
    shown = fleet.run("plan", "--user-data")  # the script the template carries, readable
    assert shown.exit_code == 0
    assert shown.stdout == base64.b64decode(data["UserData"]).decode()
    assert f"MODEL=s3://{fleet.bucket}/proj/models/final/logreg\n" in shown.stdout
