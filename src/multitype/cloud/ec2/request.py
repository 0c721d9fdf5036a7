"""The RunInstances request of ``multitype ec2 launch``: names, checks from botocore's model, the request, its rules.

Nothing here calls AWS. What AWS offers is read from botocore's own data:
instance types from the ``InstanceType`` enum of the EC2 service model
(:func:`instance_types`), regions from its endpoint/partition data
(:func:`regions`). :func:`build_request` assembles the one request we send;
:func:`validate_request` checks it against the operation's input shape
(botocore's ``validate_parameters``) and against the rules botocore does not
know but EC2 enforces (spot request type vs interruption behaviour, the user
data's 16 KB, tag limits), so a bad request fails here in one line, before
anything is uploaded.

A persistent spot request through RunInstances must stop (or hibernate) its
instance on interruption, not terminate it: EC2 refuses ``persistent`` with
``terminate``, and ``one-time`` with ``stop``. So ``--persistent`` sends
``SpotInstanceType=persistent`` with ``InstanceInterruptionBehavior=stop``:
EC2 starts the same instance again (same root volume, same user data) when
capacity returns.
"""

from __future__ import annotations

import functools
import re
import time
from typing import Any, Mapping

from multitype.cloud.catalog import nearest_hint, service_enum
from multitype.errors import AwsError

NAME_PREFIX = "multitype"
RUN_ID_MAX = 63
LOG_GROUP = "/multitype/ec2"
USER_DATA_MAX_BYTES = 16 * 1024  # EC2's limit, before base64
TAG_KEY_MAX, TAG_VALUE_MAX, TAGS_MAX = 128, 256, 50
MIN_MAX_PRICE = 0.001  # EC2 rejects a MaxPrice at or below $0.001
PERSISTENT_INTERRUPTION = "stop"
METADATA_OPTIONS = {"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 2}
_SUBNET = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_SECURITY_GROUP = re.compile(r"^sg-[0-9a-f]{8,17}$")
_AMI = re.compile(r"^ami-[0-9a-f]{8,17}$")


def run_id(slug: str, now: float | None = None) -> str:
    """``multitype-<slug>-<UTC yyyymmdd-hhmmss>``: the run's name, tag, record and log stream."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    room = RUN_ID_MAX - len(NAME_PREFIX) - len(stamp) - 2
    clean = re.sub(r"[^a-zA-Z0-9]+", "-", slug).strip("-")[:room].strip("-") or "run"
    return f"{NAME_PREFIX}-{clean}-{stamp}"


def instance_types() -> tuple[str, ...]:
    """Every EC2 instance type botocore's service model knows (``g5.xlarge``, ...)."""
    return service_enum("ec2", "InstanceType")


def check_instance_type(instance_type: str) -> str:
    """``instance_type`` if EC2 knows it.

    Raises
    ------
    AwsError
        Not an EC2 instance type; the message suggests the nearest names (a
        SageMaker ``ml.`` name is told to drop its prefix).
    """
    known = instance_types()
    if instance_type in known:
        return instance_type
    if instance_type.startswith("ml.") and instance_type[3:] in known:
        hint = f"EC2 names it {instance_type[3:]!r} (without SageMaker's 'ml.')"
    else:
        hint = nearest_hint(instance_type, known, "see 'aws ec2 describe-instance-types'")
    raise AwsError(f"instance type {instance_type!r} is not an EC2 instance type; {hint}")


@functools.lru_cache(maxsize=1)
def regions() -> tuple[str, ...]:
    """Every region with EC2 in botocore's partition data (aws, aws-cn, aws-us-gov, ...)."""
    import botocore.session

    session = botocore.session.get_session()
    names: set[str] = set()
    for partition in session.get_available_partitions():
        names.update(session.get_available_regions("ec2", partition_name=partition))
    return tuple(sorted(names))


def check_region(region: str) -> str:
    """``region`` if EC2 runs there.

    Raises
    ------
    AwsError
        An unknown region (a typo); the message names the nearest real ones.
    """
    known = regions()
    if region in known:
        return region
    hint = nearest_hint(region, known, "see 'aws ec2 describe-regions'", cutoff=0.5)
    raise AwsError(f"aws.region {region!r} in project.yaml is not an AWS region with EC2; {hint}")


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def build_request(*, image_id: str, instance_type: str, instance_profile: str, user_data: str, volume_gb: int,
                  root_device: str, tags: Mapping[str, str], spot: bool, persistent: bool = False,
                  max_price: float | None = None, key_name: str | None = None, subnet: str | None = None,
                  security_groups: list[str] | None = None) -> dict[str, Any]:
    """The RunInstances parameters of one training instance.

    Parameters
    ----------
    image_id, instance_type : str
        The AMI and the instance type.
    instance_profile : str
        An instance profile name, or its ARN.
    user_data : str
        The bootstrap script (botocore base64-encodes it on the wire).
    volume_gb : int
        Size of the gp3 root volume (deleted with the instance).
    root_device : str
        The AMI's root device name (``/dev/sda1``, ``/dev/xvda``).
    tags : mapping
        Put on the instance, its volume and (spot) its request.
    spot, persistent : bool
        Spot (one-time, or persistent with stop-on-interruption) or on-demand.
    max_price : float, optional
        Spot only: the most per hour (default: up to the on-demand price).
    key_name, subnet, security_groups : optional
        SSH key pair, subnet id and security group ids.
    """
    profile = {"Arn": instance_profile} if instance_profile.startswith("arn:") else {"Name": instance_profile}
    resources = ["instance", "volume"] + (["spot-instances-request"] if spot else [])
    request: dict[str, Any] = {
        "ImageId": image_id,
        "InstanceType": instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "IamInstanceProfile": profile,
        "InstanceInitiatedShutdownBehavior": "terminate",
        "MetadataOptions": dict(METADATA_OPTIONS),
        "BlockDeviceMappings": [{"DeviceName": root_device, "Ebs": {
            "VolumeSize": int(volume_gb), "VolumeType": "gp3", "DeleteOnTermination": True}}],
        "TagSpecifications": [{"ResourceType": r, "Tags": tag_list(tags)} for r in resources],
        "UserData": user_data,
    }
    if spot:
        options: dict[str, Any] = {"SpotInstanceType": "persistent" if persistent else "one-time"}
        if persistent:
            options["InstanceInterruptionBehavior"] = PERSISTENT_INTERRUPTION
        if max_price is not None:
            options["MaxPrice"] = f"{max_price:.4f}".rstrip("0").rstrip(".")
        request["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": options}
    if key_name:
        request["KeyName"] = key_name
    if subnet:
        request["SubnetId"] = subnet
    if security_groups:
        request["SecurityGroupIds"] = list(security_groups)
    return request


@functools.lru_cache(maxsize=1)
def _operation() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("ec2").operation_model("RunInstances")


def _tag_errors(request: Mapping[str, Any]) -> list[str]:
    errors = []
    for spec in request.get("TagSpecifications", []):
        tags = spec.get("Tags", [])
        if len(tags) > TAGS_MAX:
            errors.append(f"{len(tags)} tags on the {spec.get('ResourceType')}: EC2 allows {TAGS_MAX}; "
                          "drop some of aws.tags")
        for tag in tags:
            key, value = tag.get("Key", ""), tag.get("Value", "")
            if key.lower().startswith("aws:"):
                errors.append(f"tag {key!r}: keys starting with 'aws:' are reserved; rename it in aws.tags")
            if not key or len(key) > TAG_KEY_MAX:
                errors.append(f"tag key {key!r} must have 1 to {TAG_KEY_MAX} characters (aws.tags)")
            if len(value) > TAG_VALUE_MAX:
                errors.append(f"tag {key!r}: its value has {len(value)} characters, EC2 allows {TAG_VALUE_MAX}")
        break  # the same tags go on every resource
    return errors


def _spot_errors(options: Mapping[str, Any]) -> list[str]:
    errors = []
    kind = options.get("SpotInstanceType", "one-time")
    behaviour = options.get("InstanceInterruptionBehavior", "terminate")
    if kind == "persistent" and behaviour not in ("stop", "hibernate"):
        errors.append(f"a persistent spot request through RunInstances needs InstanceInterruptionBehavior stop or "
                      f"hibernate, got {behaviour!r}")
    if kind == "one-time" and behaviour != "terminate":
        errors.append(f"a one-time spot request must terminate on interruption, got {behaviour!r}; pass "
                      "--persistent to keep the instance")
    price = options.get("MaxPrice")
    if price is not None:
        try:
            value = float(price)
        except ValueError:
            value = float("nan")
        if not value > MIN_MAX_PRICE:
            errors.append(f"--max-price {price} must be more than ${MIN_MAX_PRICE} per hour")
    return errors


def validate_request(request: Mapping[str, Any]) -> None:
    """Check ``request`` as EC2 would, before anything is sent.

    Raises
    ------
    AwsError
        Every problem found, in one line naming the field, the value and the rule.
    """
    from botocore.exceptions import ParamValidationError
    from botocore.validate import validate_parameters

    try:
        validate_parameters(dict(request), _operation().input_shape)
    except ParamValidationError as exc:
        raise AwsError(f"invalid RunInstances request: {' '.join(str(exc).split())}") from None
    errors: list[str] = []
    try:
        check_instance_type(request["InstanceType"])
    except AwsError as exc:
        errors.append(str(exc))
    if not _AMI.match(request["ImageId"]):
        errors.append(f"ImageId {request['ImageId']!r} is not an AMI id (ami-...)")
    if request.get("MinCount") != 1 or request.get("MaxCount") != 1:
        errors.append("one training run is one instance: MinCount and MaxCount must be 1")
    if request.get("InstanceInitiatedShutdownBehavior") != "terminate":
        errors.append("InstanceInitiatedShutdownBehavior must be 'terminate' (the instance ends itself)")
    if request.get("MetadataOptions", {}).get("HttpTokens") != "required":
        errors.append("MetadataOptions.HttpTokens must be 'required' (IMDSv2 only)")
    size = len(str(request.get("UserData", "")).encode("utf-8"))
    if size > USER_DATA_MAX_BYTES:
        errors.append(f"the user data has {size} bytes; EC2 takes at most {USER_DATA_MAX_BYTES}")
    for mapping in request.get("BlockDeviceMappings", []):
        ebs = mapping.get("Ebs", {})
        if ebs.get("VolumeType") == "gp3" and not 1 <= ebs.get("VolumeSize", 0) <= 16384:
            errors.append(f"--volume-gb {ebs.get('VolumeSize')} must be between 1 and 16384 for gp3")
    if request.get("SubnetId") and not _SUBNET.match(request["SubnetId"]):
        errors.append(f"--subnet {request['SubnetId']!r} is not a subnet id (subnet-...); fix aws.ec2.subnet")
    for group in request.get("SecurityGroupIds", []):
        if not _SECURITY_GROUP.match(group):
            errors.append(f"--security-group {group!r} is not a security group id (sg-...); fix "
                          "aws.ec2.security_groups")
    market = request.get("InstanceMarketOptions")
    if market:
        errors += _spot_errors(market.get("SpotOptions", {}))
    errors += _tag_errors(request)
    if errors:
        raise AwsError("; ".join(errors))
