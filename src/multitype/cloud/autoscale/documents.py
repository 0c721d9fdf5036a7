"""The request documents of the serving fleet, built from :class:`~.settings.Settings` and checked.

Nothing here calls AWS. Each builder returns the parameters of one API call
as AWS wants them (the launch template's ``UserData`` base64-encoded by us:
unlike RunInstances, botocore does not encode it for launch templates).
:func:`check` validates a request against its operation's input shape in
botocore's service model, so a malformed document fails before anything is
sent.

The scaling policy is target tracking on ``ASGAverageCPUUtilization``. EC2 Auto
Scaling's target tracking has no scale-in/scale-out cooldown fields (those are
Application Auto Scaling's): ``cooldown`` goes into the policy's
``EstimatedInstanceWarmup`` (a new instance's CPU does not count, and does not
trigger a further scale-out, until it has run that long) and the group's
``DefaultCooldown`` (the pause after a scaling activity for simple scaling and
scheduled actions); scale-in is paced by AWS itself (its alarm needs 15
minutes of low CPU).
"""

from __future__ import annotations

import base64
import functools
from typing import Any, Mapping

from multitype.cloud.autoscale.settings import Settings
from multitype.cloud.ec2.request import METADATA_OPTIONS, tag_list
from multitype.errors import AwsError

POLICY_NAME = "multitype-cpu-target"
METRIC = "ASGAverageCPUUtilization"
SPOT_STRATEGY = "price-capacity-optimized"
TEMPLATE_VERSION = "$Latest"  # a new launch template version reaches the group without an update
SERVICES = {"ec2": "ec2", "autoscaling": "autoscaling"}


def launch_template_data(settings: Settings, image_id: str, root_device: str, user_data: str) -> dict[str, Any]:
    """LaunchTemplateData: AMI, type, instance profile, IMDSv2 only, gp3 root, tags, the serving user data."""
    profile = settings.instance_profile
    data: dict[str, Any] = {
        "ImageId": image_id,
        "InstanceType": settings.instance_type,
        "IamInstanceProfile": {"Arn": profile} if profile.startswith("arn:") else {"Name": profile},
        "MetadataOptions": dict(METADATA_OPTIONS),
        "BlockDeviceMappings": [{"DeviceName": root_device, "Ebs": {
            "VolumeSize": settings.volume_gb, "VolumeType": "gp3", "DeleteOnTermination": True}}],
        "TagSpecifications": [{"ResourceType": r, "Tags": tag_list(settings.tags)} for r in ("instance", "volume")],
        "UserData": base64.b64encode(user_data.encode("utf-8")).decode("ascii"),
    }
    if settings.security_groups:
        data["SecurityGroupIds"] = list(settings.security_groups)
    return data


def create_launch_template(settings: Settings, data: Mapping[str, Any]) -> dict[str, Any]:
    """CreateLaunchTemplate (the template itself tagged, so the launcher policy can scope it)."""
    return {"LaunchTemplateName": settings.name, "LaunchTemplateData": dict(data),
            "TagSpecifications": [{"ResourceType": "launch-template", "Tags": tag_list(settings.tags)}]}


def create_launch_template_version(settings: Settings, data: Mapping[str, Any]) -> dict[str, Any]:
    """CreateLaunchTemplateVersion: the changed data as the new latest version."""
    return {"LaunchTemplateName": settings.name, "LaunchTemplateData": dict(data)}


def template_spec(settings: Settings) -> dict[str, str]:
    return {"LaunchTemplateName": settings.name, "Version": TEMPLATE_VERSION}


def instances(settings: Settings) -> dict[str, Any]:
    """The group's ``LaunchTemplate`` (no spot) or ``MixedInstancesPolicy`` (``spot_share > 0``) parameter."""
    if settings.spot_share <= 0:
        return {"LaunchTemplate": template_spec(settings)}
    return {"MixedInstancesPolicy": {
        "LaunchTemplate": {"LaunchTemplateSpecification": template_spec(settings),
                           "Overrides": [{"InstanceType": t} for t in settings.instance_types]},
        "InstancesDistribution": {"OnDemandBaseCapacity": 0,
                                  "OnDemandPercentageAboveBaseCapacity": settings.on_demand_percent,
                                  "SpotAllocationStrategy": SPOT_STRATEGY}}}


def group_tags(settings: Settings) -> list[dict[str, Any]]:
    """The group's tags, each propagated to the instances it launches."""
    return [{"ResourceId": settings.name, "ResourceType": "auto-scaling-group", "Key": k, "Value": v,
             "PropagateAtLaunch": True} for k, v in settings.tags.items()]


def group_settings(settings: Settings) -> dict[str, Any]:
    """The group's settings that an update may change (all but its name, desired capacity and tags)."""
    return {"MinSize": settings.min_size, "MaxSize": settings.max_size, **instances(settings),
            "VPCZoneIdentifier": ",".join(settings.subnets), "HealthCheckType": "EC2",
            "HealthCheckGracePeriod": settings.health_check_grace, "DefaultCooldown": settings.cooldown}


def create_group(settings: Settings) -> dict[str, Any]:
    """CreateAutoScalingGroup."""
    return {"AutoScalingGroupName": settings.name, **group_settings(settings),
            "DesiredCapacity": settings.desired, "Tags": group_tags(settings)}


def scaling_policy(settings: Settings) -> dict[str, Any]:
    """PutScalingPolicy: target tracking of the group's average CPU."""
    return {"AutoScalingGroupName": settings.name, "PolicyName": POLICY_NAME, "PolicyType": "TargetTrackingScaling",
            "EstimatedInstanceWarmup": settings.cooldown,
            "TargetTrackingConfiguration": {"PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
                                            "TargetValue": settings.target_cpu}}


def scheduled_actions(settings: Settings) -> list[dict[str, Any]]:
    """PutScheduledUpdateGroupAction, one per schedule (recurrence in UTC)."""
    return [{"AutoScalingGroupName": settings.name, "ScheduledActionName": s.name, "Recurrence": s.cron,
             "DesiredCapacity": s.desired} for s in settings.schedules]


@functools.lru_cache(maxsize=None)
def _input_shape(service: str, operation: str) -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model(service).operation_model(operation).input_shape


def check(service: str, operation: str, params: Mapping[str, Any]) -> None:
    """Validate ``params`` against the input shape of ``service``'s ``operation`` in botocore's model.

    Raises
    ------
    AwsError
        A missing or unknown parameter, a wrong type or a value out of the model's range, in one line.
    """
    from botocore.exceptions import ParamValidationError
    from botocore.validate import validate_parameters

    try:
        validate_parameters(dict(params), _input_shape(SERVICES[service], operation))
    except ParamValidationError as exc:
        raise AwsError(f"invalid {operation} request: {' '.join(str(exc).split())}") from None
