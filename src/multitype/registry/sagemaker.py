"""``registry add --sagemaker``: a registry version mirrored to the SageMaker Model Registry.

One model package group per registry name (``multitype-<name>``, made on
first use, tagged with the project); one model package per version, with the
AWS PyTorch inference image and the ``model.tar.gz`` that ``sagemaker deploy``
would build (:mod:`multitype.cloud.sagemaker.modelpack`), uploaded under the
S3 root at ``models/registry/<name>/packages/<sha>/model.tar.gz``. The
package's approval status follows the stage (:data:`APPROVAL`) and is updated
by ``registry promote`` and ``archive`` (``UpdateModelPackage``). Every request
is checked against botocore's service model before it is sent.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from multitype import layout
from multitype.cloud import aws as cloud_aws
from multitype.cloud import catalog
from multitype.cloud.sagemaker import request as req
from multitype.config import AwsConfig
from multitype.errors import AwsError
from multitype.project import Project
from multitype.registry.index import SageMakerMirror, Version
from multitype.storage import Storage

GROUP_PREFIX = "multitype-"  # the launcher IAM policy allows model package groups named so
APPROVAL = {"production": "Approved", "staging": "PendingManualApproval", "none": "PendingManualApproval",
            "archived": "Rejected"}
CONTENT_TYPES = ["application/json"]


@dataclass(frozen=True)
class MirrorPlan:
    """Where and how a version is mirrored: checked before anything is copied or uploaded."""

    aws: AwsConfig
    root: str                  # the S3 root model.tar.gz goes under
    image: catalog.TrainingImage
    group: str
    tags: dict[str, str]


def group_name(name: str) -> str:
    return f"{GROUP_PREFIX}{name}"


def plan(project: Project, name: str, remote: str | None = None) -> MirrorPlan:
    """The mirror of ``name``: S3 root (the root, else ``--remote``/``storage.remote``), image, group name.

    Raises
    ------
    AwsError
        No S3 root, or no inference image for the region.
    """
    from multitype.cloud.sagemaker.deploy import inference_image
    from multitype.cloud.sagemaker.launch import remote_root

    aws = project.configs.project.aws
    root = remote_root(project, remote, "the registry's model.tar.gz")
    image = inference_image(aws.region, None, None)
    tags = {"multitype:project": project.configs.project.name, "multitype:task": "registry",
            "multitype:model": name, **aws.tags}
    return MirrorPlan(aws, root, image, group_name(name), tags)


def upload_archive(project: Project, mirror: MirrorPlan, folder: Path, name: str, sha256: str,
                   echo: Callable[[str], None] = print) -> str:
    """Pack ``folder`` as ``sagemaker deploy`` does and upload it under the S3 root; return its URL."""
    from multitype.cloud.sagemaker.launch import local_folder
    from multitype.cloud.sagemaker.modelpack import build_model_archive

    key = layout.registry_package(name, sha256)
    storage = Storage(mirror.root, endpoint_url=project.storage.endpoint_url, profile=mirror.aws.profile)
    with tempfile.TemporaryDirectory(prefix="multitype-registry-") as tmp:
        archive = build_model_archive(folder, Path(tmp) / "model.tar.gz", mirror.image.torch_version,
                                      local_folder(project))
        echo(f"model.tar.gz: {archive.size / 2**20:.1f} MiB, {len(archive.members)} files; uploading to "
             f"{storage.url(key)}")
        storage.put_file(archive.path, key)
    return storage.url(key)


def _tags(mirror: MirrorPlan) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v[:256]} for k, v in mirror.tags.items()]


def group_request(mirror: MirrorPlan, name: str) -> dict[str, Any]:
    return {"ModelPackageGroupName": mirror.group,
            "ModelPackageGroupDescription": f"multitype model registry: {name}", "Tags": _tags(mirror)}


def package_request(mirror: MirrorPlan, name: str, version: Version, model_data_url: str) -> dict[str, Any]:
    """``CreateModelPackage`` for ``version``: the container, its approval status and what the registry knows."""
    from multitype.cloud.sagemaker.deploy import container_environment

    metadata = {"multitype:registry-name": name, "multitype:registry-version": str(version.version),
                "multitype:sha256": version.sha256, "multitype:stage": version.stage}
    if version.run_id:
        metadata["multitype:run-id"] = version.run_id
    if version.data_fingerprint:
        metadata["multitype:data-sha256"] = version.data_fingerprint
    if version.code and version.code.get("commit"):
        metadata["multitype:commit"] = str(version.code["commit"])
    for metric in ("accuracy", "macro_f1"):
        if version.metrics and metric in version.metrics:
            metadata[f"multitype:test-{metric}"] = f"{version.metrics[metric]:.6g}"
    return {
        "ModelPackageGroupName": mirror.group,
        "ModelPackageDescription": f"{name} version {version.version} ({version.kind}, sha256 {version.sha256[:12]})",
        "InferenceSpecification": {
            "Containers": [{"Image": mirror.image.uri, "ModelDataUrl": model_data_url,
                            "Environment": container_environment(mirror.aws.region)}],
            "SupportedContentTypes": CONTENT_TYPES,
            "SupportedResponseMIMETypes": CONTENT_TYPES,
        },
        "ModelApprovalStatus": APPROVAL[version.stage],
        "CustomerMetadataProperties": {k: v[:256] for k, v in metadata.items()},
        "Tags": _tags(mirror),
    }


def status_request(arn: str, stage: str) -> dict[str, Any]:
    """``UpdateModelPackage``: the approval status of ``stage``, and the stage in the package's metadata."""
    return {"ModelPackageArn": arn, "ModelApprovalStatus": APPROVAL[stage],
            "CustomerMetadataProperties": {"multitype:stage": stage}}


def _check(operation: str, params: dict[str, Any]) -> None:
    errors = req.check_operation(operation, params)
    if errors:
        raise AwsError("; ".join(errors))


def register(mirror: MirrorPlan, name: str, version: Version, model_data_url: str) -> SageMakerMirror:
    """Create the group when it is missing, then the model package of ``version``."""
    from botocore.exceptions import ClientError

    group = group_request(mirror, name)
    package = package_request(mirror, name, version, model_data_url)
    _check("CreateModelPackageGroup", group)
    _check("CreateModelPackage", package)
    cloud_aws.check_credentials(mirror.aws)
    client = cloud_aws.client("sagemaker", mirror.aws, max_attempts=1)  # a create is not retried blindly
    try:
        with cloud_aws.aws_errors(f"describe the model package group {mirror.group}", mirror.aws):
            client.describe_model_package_group(ModelPackageGroupName=mirror.group)
    except (ClientError, AwsError) as exc:
        from multitype.cloud.sagemaker.deploy import _missing

        if not _missing(exc):
            raise
        with cloud_aws.aws_errors(f"create the model package group {mirror.group}", mirror.aws):
            client.create_model_package_group(**group)
    with cloud_aws.aws_errors(f"create a model package in {mirror.group}", mirror.aws):
        arn = client.create_model_package(**package)["ModelPackageArn"]
    return SageMakerMirror(group=mirror.group, model_package_arn=arn, model_data_url=model_data_url,
                           image=mirror.image.uri)


def set_status(aws: AwsConfig, arn: str, stage: str) -> None:
    """``UpdateModelPackage``: the approval status of ``stage``."""
    params = status_request(arn, stage)
    _check("UpdateModelPackage", params)
    with cloud_aws.aws_errors(f"update the model package {arn}", aws):
        cloud_aws.client("sagemaker", aws).update_model_package(**params)
