"""The shared AWS client layer against moto: endpoints per service, credentials, one-line errors."""

from __future__ import annotations

import pytest

from multitype.cloud import aws
from multitype.config import AwsConfig
from multitype.errors import AwsError


def test_clients_reach_moto_per_service(aws_env) -> None:
    cfg = AwsConfig()
    assert aws.client("sts", cfg).get_caller_identity()["Account"] == "123456789012"
    assert aws.client("sagemaker", cfg).list_training_jobs()["TrainingJobSummaries"] == []


def test_missing_credentials_name_the_sources_tried(aws_env, monkeypatch, tmp_path) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    with pytest.raises(AwsError, match="no AWS credentials found; tried: env, .*shared-credentials-file"):
        aws.check_credentials(AwsConfig())


def test_client_errors_become_one_line(aws_env) -> None:
    cfg = AwsConfig()
    with pytest.raises(AwsError, match="cannot describe the job nope: .*"):
        with aws.aws_errors("describe the job nope", cfg):
            aws.client("sagemaker", cfg).describe_training_job(TrainingJobName="nope")
