"""``registry add --sagemaker``, ``promote`` and ``archive`` against moto (SageMaker) and SeaweedFS (S3).

Moto implements CreateModelPackageGroup, DescribeModelPackageGroup, CreateModelPackage and
UpdateModelPackage, so every call reaches it; each request is also captured at our clients (botocore's
``provide-client-params`` event), compared whole and checked against botocore's service model.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from multitype.cloud import aws
from multitype.cloud.sagemaker import request as req
from multitype.config import AwsConfig
from multitype.manifest import folder_digest
from tests.cloud.launch_helpers import project_yaml
from tests.conftest import write_configs
from tests.registry.conftest import Project, one_line_error

IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6.0-cpu-py312"
TAGS = [{"Key": "multitype:project", "Value": "bbc-news"}, {"Key": "multitype:task", "Value": "registry"},
        {"Key": "multitype:model", "Value": "news"}, {"Key": "team", "Value": "nlp"}]
ENVIRONMENT = {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
               "SAGEMAKER_REGION": "us-east-1", "SAGEMAKER_CONTAINER_LOG_LEVEL": "20"}


@pytest.fixture
def sent(aws_env, s3_server, monkeypatch: pytest.MonkeyPatch):
    """Every SageMaker request our clients send, as (operation, params)."""
    monkeypatch.delenv("SAGEMAKER_ROLE", raising=False)
    calls: list[tuple[str, dict[str, Any]]] = []

    def capture(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, json.loads(json.dumps(params))))

    clients = [aws.client("sagemaker", AwsConfig(), max_attempts=1), aws.client("sagemaker", AwsConfig())]
    for client in clients:
        client.meta.events.register("provide-client-params.sagemaker", capture, unique_id="test-registry-capture")
    yield calls
    for client in clients:
        client.meta.events.unregister("provide-client-params.sagemaker", unique_id="test-registry-capture")


def _package(version: int, stage: str, approval: str, url: str, v: dict) -> dict[str, Any]:
    return {
        "ModelPackageGroupName": "multitype-news",
        "ModelPackageDescription": f"news version {version} (sklearn, sha256 {v['sha256'][:12]})",
        "InferenceSpecification": {"Containers": [{"Image": IMAGE, "ModelDataUrl": url, "Environment": ENVIRONMENT}],
                                   "SupportedContentTypes": ["application/json"],
                                   "SupportedResponseMIMETypes": ["application/json"]},
        "ModelApprovalStatus": approval,
        "CustomerMetadataProperties": {
            "multitype:registry-name": "news", "multitype:registry-version": str(version),
            "multitype:sha256": v["sha256"], "multitype:stage": stage, "multitype:run-id": v["run_id"],
            "multitype:data-sha256": v["data_fingerprint"], "multitype:commit": v["code"]["commit"],
            "multitype:test-accuracy": f"{v['metrics']['accuracy']:.6g}",
            "multitype:test-macro_f1": f"{v['metrics']['macro_f1']:.6g}"},
        "Tags": TAGS,
    }


@pytest.mark.slow
def test_versions_are_mirrored_and_their_approval_follows_the_stage(cli, project: Project, sent, s3_server,
                                                                    tmp_path: Path) -> None:
    bucket = s3_server.make_bucket("mirror")
    remote = f"s3://{bucket}/proj"
    configs = write_configs(tmp_path / "configs", project=project_yaml(remote))
    where = ["--root", str(project.root), "--config-dir", str(configs)]
    res = cli("registry", "add", "models/final/logreg", "--name", "news", "--stage", "production", "--sagemaker",
              *where)
    assert res.exit_code == 0, res.stderr
    v1 = json.loads(cli("registry", "show", "news:1", *where).stdout)
    digest = folder_digest(project.root / "models" / "final" / "logreg")
    key = f"proj/models/registry/news/packages/{digest[:16]}/model.tar.gz"
    url = f"s3://{bucket}/{key}"
    arn1 = "arn:aws:sagemaker:us-east-1:123456789012:model-package/multitype-news/1"
    assert sent == [
        ("DescribeModelPackageGroup", {"ModelPackageGroupName": "multitype-news"}),
        ("CreateModelPackageGroup", {"ModelPackageGroupName": "multitype-news",
                                     "ModelPackageGroupDescription": "multitype model registry: news", "Tags": TAGS}),
        ("CreateModelPackage", _package(1, "production", "Approved", url, v1))]
    assert v1["sagemaker"] == {"group": "multitype-news", "model_package_arn": arn1, "model_data_url": url,
                               "image": IMAGE}
    assert f"SageMaker model package {arn1} (Approved)" in res.stderr
    # the archive is the one `sagemaker deploy` builds: the model at the top, the endpoint's code under code/
    data = s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
    assert {"model.json", "model.skops", "code/inference.py", "code/requirements.txt"} <= set(names)

    # a second version (staging), promoted: the first goes back to staging, then is archived
    sent.clear()
    assert cli("train", "baseline", "--models", "logreg", *where).exit_code == 0  # another model
    assert cli("registry", "add", "models/final/logreg", "--name", "news", "--stage", "staging", "--sagemaker",
               *where).exit_code == 0
    v2 = json.loads(cli("registry", "show", "news:2", *where).stdout)
    url2 = v2["sagemaker"]["model_data_url"]
    arn2 = arn1[:-1] + "2"
    assert sent == [("DescribeModelPackageGroup", {"ModelPackageGroupName": "multitype-news"}),
                    ("CreateModelPackage", _package(2, "staging", "PendingManualApproval", url2, v2))]
    sent.clear()
    res = cli("registry", "promote", "news:2", "--stage", "production", *where)
    assert res.exit_code == 0, res.stderr
    assert cli("registry", "archive", "news:1", *where).exit_code == 0
    assert sent == [
        ("UpdateModelPackage", {"ModelPackageArn": arn2, "ModelApprovalStatus": "Approved",
                                "CustomerMetadataProperties": {"multitype:stage": "production"}}),
        ("UpdateModelPackage", {"ModelPackageArn": arn1, "ModelApprovalStatus": "PendingManualApproval",
                                "CustomerMetadataProperties": {"multitype:stage": "staging"}}),
        ("UpdateModelPackage", {"ModelPackageArn": arn1, "ModelApprovalStatus": "Rejected",
                                "CustomerMetadataProperties": {"multitype:stage": "archived"}})]
    sm = aws.client("sagemaker", AwsConfig())
    assert [sm.describe_model_package(ModelPackageName=a)["ModelApprovalStatus"] for a in (arn1, arn2)] == \
        ["Rejected", "Approved"]
    for operation, params in [*sent, ("CreateModelPackage", _package(2, "staging", "PendingManualApproval", url2, v2))]:
        assert req.check_operation(operation, params) == [], operation

    # sagemaker deploy registry:news: the production version (2) behind an endpoint named after the registry name
    sent.clear()
    res = cli("sagemaker", "deploy", "registry:news", *where)
    assert res.exit_code == 0, res.stderr
    assert res.stdout.strip() == "multitype-news"
    assert f"model registry:news is news version 2 (production, sha256 {v2['sha256'][:12]})" in res.stderr
    created = dict(sent)
    assert created["CreateModel"]["PrimaryContainer"]["Image"] == IMAGE
    assert created["CreateEndpoint"]["EndpointName"] == "multitype-news"


def test_mirror_without_an_s3_root_is_refused_before_anything_is_copied(cli, project: Project, sent,
                                                                       tmp_path: Path) -> None:
    configs = write_configs(tmp_path / "configs", project=project_yaml(None))
    res = cli("registry", "add", "models/final/logreg", "--name", "news", "--sagemaker", "--root", project.root,
              "--config-dir", configs)
    assert one_line_error(res) == ("no S3 root for the registry's model.tar.gz: set storage.remote "
                                   "(s3://bucket/prefix) in project.yaml or pass --remote")
    assert not project.index.exists() and not (project.root / "models" / "registry").exists() and sent == []
