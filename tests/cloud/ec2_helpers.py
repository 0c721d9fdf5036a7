"""A prepared project for ``multitype ec2 ...`` tests, and the AWS side moto needs for it.

moto's RegisterImage keeps only a name and makes the image the caller's own
(owner 123456789012, no architecture), so an image "published by Amazon" is
registered through the API and then given the ``amazon`` owner alias, an
architecture and a creation date in moto's own backend state (moto.backends,
the state its server answers from; the server runs in this process).
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import yaml

from multitype.cloud import aws
from multitype.config import AwsConfig, default_yaml
from tests.conftest import write_configs
from tests.transformer.conftest import write_processed

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
PROFILE = "multitype-ec2"
ROLE = "MultitypeEc2"
PROJECT = "bbc-news"
DLAMI = "Deep Learning OSS Nvidia Driver AMI GPU PyTorch 2.7 (Ubuntu 22.04) {date}"


def project_yaml(remote: str | None, profile: str | None = PROFILE, region: str = REGION,
                 **ec2: object) -> str:
    data = yaml.safe_load(default_yaml("project"))
    data["name"] = PROJECT
    data["storage"]["remote"] = remote
    data["aws"]["region"] = region
    data["aws"]["ec2_instance_profile"] = profile
    data["aws"]["tags"] = {"team": "nlp"}
    data["aws"]["ec2"].update(ec2)
    return yaml.safe_dump(data, sort_keys=False)


def make_project(base: Path, remote: str | None, prepared: bool = True, **project: Any) -> tuple[Path, Path]:
    """(root, config_dir): a processed 4-class BBC project pushing to ``remote``."""
    root = base / "root"
    root.mkdir(parents=True, exist_ok=True)
    if prepared:
        write_processed(root)
    return root, write_configs(base / "configs", project=project_yaml(remote, **project))


def ec2() -> Any:
    return aws.client("ec2", AwsConfig(region=REGION))


def make_instance_profile(name: str = PROFILE) -> str:
    iam = aws.client("iam", AwsConfig(region=REGION))
    iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument='{"Version": "2012-10-17", "Statement": []}')
    arn = iam.create_instance_profile(InstanceProfileName=name)["InstanceProfile"]["Arn"]
    iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=ROLE)
    return arn


def register_image(name: str, created: str, owner_alias: str | None = "amazon",
                   architecture: str = "x86_64") -> str:
    """RegisterImage in moto, then the owner alias, architecture and creation date AWS would report."""
    from moto.backends import get_backend

    image_id = ec2().register_image(Name=name, Architecture=architecture, RootDeviceName="/dev/sda1")["ImageId"]
    image = get_backend("ec2")[ACCOUNT][REGION].amis[image_id]
    image.owner_alias = owner_alias
    image.architecture = architecture
    image.creation_date = dt.datetime.fromisoformat(created)
    return image_id


def live_instances() -> list[dict[str, Any]]:
    """Every instance moto holds that is not terminated."""
    found = ec2().describe_instances()["Reservations"]
    return [i for r in found for i in r["Instances"] if i["State"]["Name"] != "terminated"]


def put_logs(stream: str, lines: list[str]) -> None:
    """The run's lines in /multitype/ec2, as the instance's log shipper would put them."""
    logs = aws.client("logs", AwsConfig(region=REGION))
    try:
        logs.create_log_group(logGroupName="/multitype/ec2")
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    logs.create_log_stream(logGroupName="/multitype/ec2", logStreamName=stream)
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName="/multitype/ec2", logStreamName=stream,
                        logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(lines)])
