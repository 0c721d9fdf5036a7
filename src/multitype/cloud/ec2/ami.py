"""The machine image of an EC2 training run: the region's newest Deep Learning AMI for PyTorch, or the one given.

AWS publishes its Deep Learning AMIs (DLAMI) under the ``amazon`` owner alias,
named ``Deep Learning OSS Nvidia Driver AMI GPU PyTorch <version> (<OS>)
<yyyymmdd>`` for x86_64 and ``Deep Learning ARM64 AMI OSS Nvidia Driver GPU
PyTorch ...`` for Graviton. :func:`default_ami` asks DescribeImages for the
available ones of the instance type's architecture (DescribeInstanceTypes)
and takes the newest ``CreationDate``. The same image serves CPU types: the
NVIDIA driver just stays idle, and the run installs its own pinned
requirements either way. :func:`check_ami` describes an AMI that was given
(``--ami`` / ``aws.ec2.ami``) and refuses one that does not exist, is not
available, or is built for another architecture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from multitype.cloud.aws import aws_errors, client
from multitype.config import AwsConfig
from multitype.errors import AwsError

OWNERS = ["amazon"]
NAME_PATTERNS = {
    "x86_64": ["Deep Learning OSS Nvidia Driver AMI GPU PyTorch*"],
    "arm64": ["Deep Learning ARM64 AMI OSS Nvidia Driver GPU PyTorch*"],
}


@dataclass(frozen=True)
class Image:
    """An AMI and what the request needs from it."""

    image_id: str
    name: str
    created: str
    architecture: str
    root_device: str
    root_size_gb: int | None  # the root snapshot's size: the smallest root volume EC2 accepts


def architectures(aws: AwsConfig, instance_type: str) -> list[str]:
    """The CPU architectures ``instance_type`` runs (``["x86_64"]``, ``["arm64"]``), from DescribeInstanceTypes."""
    with aws_errors(f"describe the instance type {instance_type} in {aws.region}", aws):
        found = client("ec2", aws).describe_instance_types(InstanceTypes=[instance_type]).get("InstanceTypes", [])
    if not found:
        raise AwsError(f"instance type {instance_type} is not offered in {aws.region}; pick another "
                       "--instance-type or aws.region")
    return [a for a in found[0].get("ProcessorInfo", {}).get("SupportedArchitectures", []) if a in NAME_PATTERNS] \
        or ["x86_64"]


def _image(raw: dict[str, Any]) -> Image:
    root = raw.get("RootDeviceName") or "/dev/xvda"
    size = next((m.get("Ebs", {}).get("VolumeSize") for m in raw.get("BlockDeviceMappings", [])
                 if m.get("DeviceName") == root), None)
    return Image(image_id=raw["ImageId"], name=str(raw.get("Name", "")), created=str(raw.get("CreationDate", "")),
                 architecture=str(raw.get("Architecture", "x86_64")), root_device=root,
                 root_size_gb=int(size) if size else None)


def default_ami(aws: AwsConfig, instance_type: str) -> Image:
    """The newest available Deep Learning AMI for PyTorch owned by ``amazon`` for ``instance_type``'s architecture.

    Raises
    ------
    AwsError
        None in this region (name one with ``--ami``), or a failed request.
    """
    archs = architectures(aws, instance_type)
    patterns = [p for a in archs for p in NAME_PATTERNS[a]]
    with aws_errors(f"look up the Deep Learning AMI in {aws.region}", aws):
        images = client("ec2", aws).describe_images(Owners=OWNERS, Filters=[
            {"Name": "name", "Values": patterns}, {"Name": "state", "Values": ["available"]},
            {"Name": "architecture", "Values": archs}]).get("Images", [])
    images = [i for i in images if i.get("Architecture", "x86_64") in archs]
    if not images:
        raise AwsError(f"no Deep Learning AMI for PyTorch ({' or '.join(patterns)}, owner amazon, {'/'.join(archs)}) "
                       f"in {aws.region}; pass --ami (or set aws.ec2.ami) to an AMI that has Python 3")
    return _image(max(images, key=lambda i: (str(i.get("CreationDate", "")), str(i.get("ImageId")))))


def check_ami(aws: AwsConfig, image_id: str, instance_type: str) -> Image:
    """Describe the AMI ``image_id`` and check that ``instance_type`` can boot it.

    Raises
    ------
    AwsError
        It does not exist in ``aws.region`` (or is malformed), is not available,
        or is built for another architecture.
    """
    where = f"--ami / aws.ec2.ami {image_id!r}"
    try:
        with aws_errors(f"describe the AMI {image_id}", aws):
            images = client("ec2", aws).describe_images(ImageIds=[image_id]).get("Images", [])
    except AwsError as exc:
        if "InvalidAMIID" in str(exc):
            images = []
        else:
            raise
    if not images:
        raise AwsError(f"{where}: no such AMI in {aws.region}; check the id and region, or leave it unset for the "
                       "newest Deep Learning AMI for PyTorch")
    image = _image(images[0])
    state = images[0].get("State", "available")
    if state != "available":
        raise AwsError(f"{where} is {state}, not available; pick another AMI")
    archs = architectures(aws, instance_type)
    if image.architecture not in archs:
        raise AwsError(f"{where} is built for {image.architecture}, but {instance_type} runs {'/'.join(archs)}; "
                       "pick a matching AMI or instance type")
    return image
