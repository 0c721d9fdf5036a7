"""Plan, apply, show and destroy the serving fleet: only what differs from what AWS holds is sent.

:func:`plan` resolves the settings (nothing is read from AWS before they are
all valid), finds the AMI and checks the instance profile, renders the user
data, builds the wanted documents (:mod:`.documents`), reads what exists
(the launch template's latest version, the group, its policies and scheduled
actions) and returns the :class:`Step` list that turns one into the other,
each step checked against botocore's model. :func:`apply` pushes the code
(``<root>/code/``, incremental) and sends exactly those steps, in order, so
a second apply finds nothing to do and sends nothing. What is compared:

- the launch template's data (the tags EC2 adds about the template itself
  aside): a difference is a new version, which the group picks up through
  ``$Latest`` for the instances it launches next;
- the group's sizes, subnets, instances policy, health check and cooldown
  (UpdateAutoScalingGroup with the changed fields only); its desired capacity
  only when ``--desired`` is given or the current one falls outside the new
  min/max (else target tracking's value stays); its tags (CreateOrUpdateTags;
  tags are never removed);
- the policy's type, warm-up and target; each scheduled action by name
  (``multitype-<cron>``), and any other ``multitype-`` action deleted.

:func:`destroy` deletes the scheduled actions and the policy, force-deletes
the group (its instances are terminated) and deletes the launch template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from multitype.cloud import aws as cloud_aws
from multitype.cloud.autoscale import documents as docs
from multitype.cloud.autoscale.settings import AutoscaleOptions, Settings, default_name, resolve
from multitype.errors import AwsError
from multitype.project import Project

SCHEDULE_PREFIX = "multitype-"
ACTIVITIES = 10


@dataclass(frozen=True)
class Step:
    """One request: the service, the operation and its parameters."""

    service: str
    operation: str
    request: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"service": self.service, "operation": self.operation, "request": self.request}


@dataclass
class Plan:
    """The steps that bring AWS to the settings (empty: nothing to do), and what they were built from."""

    settings: Settings
    steps: list[Step]
    user_data: str
    image_id: str
    exists: dict[str, bool] = field(default_factory=dict)

    def as_json(self) -> list[dict[str, Any]]:
        return [s.as_json() for s in self.steps]


# --- reading what exists ---------------------------------------------------------------------------
def _template_data(aws: Any, name: str) -> dict[str, Any] | None:
    """The data of the launch template's latest version, or None when there is no such template."""
    ec2 = cloud_aws.client("ec2", aws)
    try:
        with cloud_aws.aws_errors(f"describe the launch template {name}", aws):
            found = ec2.describe_launch_template_versions(LaunchTemplateName=name, Versions=["$Latest"])
    except AwsError as exc:
        if "NotFound" in str(exc) or "does not exist" in str(exc):
            return None
        raise
    versions = found.get("LaunchTemplateVersions", [])
    return versions[0].get("LaunchTemplateData", {}) if versions else None


def _group(aws: Any, name: str) -> dict[str, Any] | None:
    with cloud_aws.aws_errors(f"describe the Auto Scaling group {name}", aws):
        found = cloud_aws.client("autoscaling", aws).describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    groups = found.get("AutoScalingGroups", [])
    return groups[0] if groups else None


def _policies(aws: Any, name: str) -> list[dict[str, Any]]:
    with cloud_aws.aws_errors(f"describe the scaling policies of {name}", aws):
        return cloud_aws.client("autoscaling", aws).describe_policies(AutoScalingGroupName=name).get(
            "ScalingPolicies", [])


def _scheduled(aws: Any, name: str) -> list[dict[str, Any]]:
    with cloud_aws.aws_errors(f"describe the scheduled actions of {name}", aws):
        return cloud_aws.client("autoscaling", aws).describe_scheduled_actions(AutoScalingGroupName=name).get(
            "ScheduledUpdateGroupActions", [])


# --- comparing --------------------------------------------------------------------------------------
def _norm(value: Any) -> Any:
    """JSON-comparable: tag lists sorted, numbers as floats (AWS answers 60.0 for 60)."""
    if isinstance(value, Mapping):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_norm(v) for v in value]
        if items and all(isinstance(i, dict) and "Key" in i for i in items):
            items = sorted(items, key=lambda i: json.dumps(i, sort_keys=True))
        return items
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return float(value)


def _template_differs(wanted: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    current = dict(current)
    current["TagSpecifications"] = [s for s in current.get("TagSpecifications", [])
                                    if s.get("ResourceType") != "launch-template"]  # about the template itself
    if not current["TagSpecifications"]:
        current.pop("TagSpecifications")
    return _norm(dict(wanted)) != _norm(current)


def _subset(wanted: Any, current: Any) -> bool:
    """Does ``current`` hold every value of ``wanted`` (AWS adds defaults we did not send)?"""
    if isinstance(wanted, Mapping):
        return isinstance(current, Mapping) and all(_subset(v, current.get(k)) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(current, list) and len(wanted) == len(current) and all(
            _subset(w, c) for w, c in zip(wanted, current))
    return _norm(wanted) == _norm(current)


def _group_changes(settings: Settings, group: Mapping[str, Any]) -> dict[str, Any]:
    """The UpdateAutoScalingGroup fields whose value differs (empty: none)."""
    changes: dict[str, Any] = {}
    for key, value in docs.group_settings(settings).items():
        if key == "VPCZoneIdentifier":
            if set(value.split(",")) != set(str(group.get(key, "")).split(",")):
                changes[key] = value
        elif key in ("LaunchTemplate", "MixedInstancesPolicy"):
            if not _subset(value, group.get(key)):
                changes[key] = value
        elif _norm(value) != _norm(group.get(key)):
            changes[key] = value
    current = group.get("DesiredCapacity")
    if settings.desired_given and current != settings.desired:
        changes["DesiredCapacity"] = settings.desired
    elif current is not None and not settings.min_size <= current <= settings.max_size:
        changes["DesiredCapacity"] = min(max(current, settings.min_size), settings.max_size)
    return changes


def _tag_changes(settings: Settings, group: Mapping[str, Any]) -> list[dict[str, Any]]:
    have = {t["Key"]: (t.get("Value"), bool(t.get("PropagateAtLaunch"))) for t in group.get("Tags", [])}
    return [t for t in docs.group_tags(settings) if have.get(t["Key"]) != (t["Value"], True)]


# --- plan and apply ---------------------------------------------------------------------------------
def _image(settings: Settings, aws: Any) -> Any:
    from multitype.cloud.ec2 import ami as amis

    if settings.ami:
        return amis.check_ami(aws, settings.ami, settings.instance_type)
    return amis.default_ami(aws, settings.instance_type)


def plan(project: Project, opts: AutoscaleOptions) -> Plan:
    """The steps :func:`apply` would send for ``opts`` against what AWS holds now.

    Raises
    ------
    UserError
        A setting (all problems in one line), the credentials, the instance
        profile, the AMI, a document botocore refuses, or AWS refused a read.
    """
    from multitype.cloud.autoscale.userdata import render_serve_user_data
    from multitype.cloud.ec2.launch import check_instance_profile

    settings = resolve(project, opts)
    aws = project.configs.project.aws
    cloud_aws.check_credentials(aws)
    check_instance_profile(aws, settings.instance_profile)
    image = _image(settings, aws)
    from multitype.cloud.ec2.ami import architectures

    wrong = [f"{t} ({'/'.join(a)})" for t in settings.instance_types[1:]
             if image.architecture not in (a := architectures(aws, t))]
    if wrong:
        raise AwsError(f"the AMI {image.image_id} is built for {image.architecture}, but {', '.join(wrong)} cannot "
                       "boot it; give --instance-types of one architecture")
    if image.root_size_gb and settings.volume_gb < image.root_size_gb:
        raise AwsError(f"--volume-gb {settings.volume_gb} is smaller than the AMI's root snapshot "
                       f"({image.root_size_gb} GB, {image.image_id}); pass --volume-gb {image.root_size_gb} or more")
    user_data = render_serve_user_data(root=settings.root, region=settings.region, model=settings.model,
                                       port=settings.port, endpoint_url=settings.endpoint_url)
    data = docs.launch_template_data(settings, image.image_id, image.root_device, user_data)

    steps: list[Step] = []
    current_data = _template_data(aws, settings.name)
    if current_data is None:
        steps.append(Step("ec2", "CreateLaunchTemplate", docs.create_launch_template(settings, data)))
    elif _template_differs(data, current_data):
        steps.append(Step("ec2", "CreateLaunchTemplateVersion", docs.create_launch_template_version(settings, data)))
    group = _group(aws, settings.name)
    if group is None:
        steps.append(Step("autoscaling", "CreateAutoScalingGroup", docs.create_group(settings)))
    else:
        changes = _group_changes(settings, group)
        if changes:
            steps.append(Step("autoscaling", "UpdateAutoScalingGroup",
                              {"AutoScalingGroupName": settings.name, **changes}))
        tags = _tag_changes(settings, group)
        if tags:
            steps.append(Step("autoscaling", "CreateOrUpdateTags", {"Tags": tags}))
    policy = docs.scaling_policy(settings)
    have = {p["PolicyName"]: p for p in _policies(aws, settings.name)} if group else {}
    if docs.POLICY_NAME not in have or not _subset(policy, have[docs.POLICY_NAME]):
        steps.append(Step("autoscaling", "PutScalingPolicy", policy))
    scheduled = {a["ScheduledActionName"]: a for a in _scheduled(aws, settings.name)} if group else {}
    wanted = docs.scheduled_actions(settings)
    for action in wanted:
        if not _subset(action, scheduled.get(action["ScheduledActionName"], {})):
            steps.append(Step("autoscaling", "PutScheduledUpdateGroupAction", action))
    names = {a["ScheduledActionName"] for a in wanted}
    for stale in sorted(n for n in scheduled if n.startswith(SCHEDULE_PREFIX) and n not in names):
        steps.append(Step("autoscaling", "DeleteScheduledAction",
                          {"AutoScalingGroupName": settings.name, "ScheduledActionName": stale}))
    for step in steps:
        docs.check(step.service, step.operation, step.request)
    return Plan(settings, steps, user_data, image.image_id,
                exists={"launch_template": current_data is not None, "group": group is not None})


def push_code(project: Project, root: str) -> list[str]:
    """``<root>/code/`` as ``sync push --only code`` makes it (only what changed); the keys uploaded."""
    from multitype.cloud.bundle import code_files
    from multitype.cloud.ec2.launch import local_folder
    from multitype.sync import sync

    local = local_folder(project)
    storage_cfg = project.configs.project.storage
    result = sync("push", local=local, remote=root, only=["code"], endpoint_url=storage_cfg.endpoint_url,
                  profile=project.configs.project.aws.profile, code_files=code_files(local))
    return list(result.uploaded)


def send(project: Project, steps: list[Step], echo: Callable[[str], None] = print) -> None:
    """Send ``steps`` in order (each once: no blind retry of a create), one line each."""
    aws = project.configs.project.aws
    for step in steps:
        client = cloud_aws.client(step.service, aws, max_attempts=1)
        method = getattr(client, _snake(step.operation))
        with cloud_aws.aws_errors(f"{step.operation} ({_what(step)})", aws):
            method(**step.request)
        echo(f"{step.operation}: {_what(step)}")


def apply(project: Project, result: Plan, echo: Callable[[str], None] = print) -> list[str]:
    """Push the code, then send the plan's steps; returns the code keys uploaded."""
    uploaded = push_code(project, result.settings.root)
    if uploaded:
        echo(f"pushed {len(uploaded)} code file(s) to {result.settings.root}/code/")
    send(project, result.steps, echo)
    return uploaded


def _snake(operation: str) -> str:
    import botocore

    return botocore.xform_name(operation)


def _what(step: Step) -> str:
    r = step.request
    return str(r.get("ScheduledActionName") or r.get("PolicyName") or r.get("AutoScalingGroupName")
               or r.get("LaunchTemplateName") or (r.get("Tags") or [{}])[0].get("ResourceId", ""))


# --- status and destroy -----------------------------------------------------------------------------
def status(project: Project, name: str | None = None) -> dict[str, Any]:
    """The group's sizes, instances, policy, scheduled actions and newest scaling activities.

    Raises
    ------
    AwsError
        There is no such group (run ``autoscale apply``), or a read failed.
    """
    aws = project.configs.project.aws
    name = name or default_name(project.configs.project.name)
    cloud_aws.check_credentials(aws)
    group = _group(aws, name)
    if group is None:
        raise AwsError(f"no Auto Scaling group {name} in {aws.region}; create it with 'multitype autoscale apply'")
    with cloud_aws.aws_errors(f"describe the scaling activities of {name}", aws):
        activities = cloud_aws.client("autoscaling", aws).describe_scaling_activities(
            AutoScalingGroupName=name, MaxRecords=ACTIVITIES).get("Activities", [])
    policy = next((p for p in _policies(aws, name) if p["PolicyName"] == docs.POLICY_NAME), None)
    tracking = (policy or {}).get("TargetTrackingConfiguration", {})
    template = group.get("LaunchTemplate") or group.get("MixedInstancesPolicy", {}).get("LaunchTemplate", {}).get(
        "LaunchTemplateSpecification", {})
    return {
        "name": name, "region": aws.region, "min": group.get("MinSize"), "max": group.get("MaxSize"),
        "desired": group.get("DesiredCapacity"), "launch_template": template.get("LaunchTemplateName"),
        "template_version": template.get("Version"), "subnets": str(group.get("VPCZoneIdentifier", "")).split(","),
        "spot": group.get("MixedInstancesPolicy", {}).get("InstancesDistribution"),
        "instances": [{"id": i.get("InstanceId"), "type": i.get("InstanceType"), "zone": i.get("AvailabilityZone"),
                       "state": i.get("LifecycleState"), "health": i.get("HealthStatus")}
                      for i in group.get("Instances", [])],
        "policy": None if policy is None else {
            "name": policy["PolicyName"], "type": policy.get("PolicyType"),
            "metric": tracking.get("PredefinedMetricSpecification", {}).get("PredefinedMetricType"),
            "target": tracking.get("TargetValue"), "warmup": policy.get("EstimatedInstanceWarmup")},
        "schedules": [{"name": a["ScheduledActionName"], "recurrence": a.get("Recurrence"),
                       "desired": a.get("DesiredCapacity")} for a in _scheduled(aws, name)],
        "activities": [{"start": str(a.get("StartTime", "")), "status": a.get("StatusCode"),
                        "description": a.get("Description")} for a in activities],
    }


def destroy_steps(project: Project, name: str | None = None) -> list[Step]:
    """The deletes that remove the fleet ``name`` (what does not exist is skipped; empty: nothing left)."""
    aws = project.configs.project.aws
    name = name or default_name(project.configs.project.name)
    cloud_aws.check_credentials(aws)
    steps: list[Step] = []
    if _group(aws, name) is not None:
        steps += [Step("autoscaling", "DeleteScheduledAction",
                       {"AutoScalingGroupName": name, "ScheduledActionName": a["ScheduledActionName"]})
                  for a in _scheduled(aws, name)]
        steps += [Step("autoscaling", "DeletePolicy", {"AutoScalingGroupName": name, "PolicyName": p["PolicyName"]})
                  for p in _policies(aws, name)]
        steps.append(Step("autoscaling", "DeleteAutoScalingGroup", {"AutoScalingGroupName": name,
                                                                    "ForceDelete": True}))
    if _template_data(aws, name) is not None:
        steps.append(Step("ec2", "DeleteLaunchTemplate", {"LaunchTemplateName": name}))
    for step in steps:
        docs.check(step.service, step.operation, step.request)
    return steps
