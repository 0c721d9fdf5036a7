"""``multitype sync archive``: a lifecycle rule merged into the bucket's configuration (moto S3)."""

from __future__ import annotations

import json

import boto3
import pytest

from multitype.errors import UserError
from multitype.cloud.lifecycle import archive_rules, merge_rules, parse_days

OTHER_RULE = {"ID": "keep-logs-90d", "Filter": {"Prefix": "logs/"}, "Status": "Enabled",
              "Expiration": {"Days": 90}}


@pytest.fixture
def bucket(moto_env: str) -> str:
    client = boto3.client("s3", endpoint_url=moto_env, region_name="us-east-1")
    name = f"archive-{len(client.list_buckets()['Buckets'])}"
    client.create_bucket(Bucket=name)
    client.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": [OTHER_RULE]})
    return name


def rules_of(endpoint: str, bucket: str) -> list[dict]:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    return client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]


def test_rules_are_exactly_these() -> None:
    assert archive_rules("s3://b-1/team/proj", 45, "DEEP_ARCHIVE") == [
        {"ID": "multitype-archive:team/proj/models/checkpoints/", "Filter": {"Prefix": "team/proj/models/checkpoints/"},
         "Status": "Enabled", "Transitions": [{"Days": 45, "StorageClass": "DEEP_ARCHIVE"}]},
        {"ID": "multitype-archive:team/proj/data/raw/", "Filter": {"Prefix": "team/proj/data/raw/"},
         "Status": "Enabled", "Transitions": [{"Days": 45, "StorageClass": "DEEP_ARCHIVE"}]},
    ]
    assert archive_rules("s3://b-1", 1, "GLACIER")[0]["Filter"] == {"Prefix": "models/checkpoints/"}


def test_merge_keeps_other_rules_and_replaces_ours() -> None:
    old = archive_rules("s3://b-1/p", 30, "GLACIER_IR")
    new = archive_rules("s3://b-1/p", 60, "GLACIER")
    merged = merge_rules([OTHER_RULE, *old], new)
    assert merged == [OTHER_RULE, *new]


@pytest.mark.parametrize("older,cls,fragment", [
    ("0d", "GLACIER", "whole number of days"), ("thirty", "GLACIER", "whole number of days"),
    ("10d", "STANDARD_IA", "30 days"), ("30d", "COLD", "must be one of"),
])
def test_bad_options(older: str, cls: str, fragment: str) -> None:
    with pytest.raises(UserError, match=fragment):
        archive_rules("s3://b-1/p", parse_days(older), cls)


def test_cli_prints_then_applies_only_with_yes(cli, bucket: str, moto_env: str) -> None:
    remote = f"s3://{bucket}/proj"
    shown = cli("sync", "archive", "--remote", remote, "--older-than", "30d", "--storage-class", "GLACIER_IR")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout) == {"Rules": archive_rules(remote, 30, "GLACIER_IR")}
    assert "not applied" in shown.stderr
    assert rules_of(moto_env, bucket) == [OTHER_RULE]  # stdin is not a terminal: nothing changed

    applied = cli("sync", "archive", "--remote", remote, "--older-than", "30d", "--yes")
    assert applied.exit_code == 0, applied.stderr
    assert rules_of(moto_env, bucket) == [OTHER_RULE, *archive_rules(remote, 30, "GLACIER_IR")]

    again = cli("sync", "archive", "--remote", remote, "--older-than", "90", "--storage-class", "GLACIER", "--yes")
    assert again.exit_code == 0, again.stderr
    assert rules_of(moto_env, bucket) == [OTHER_RULE, *archive_rules(remote, 90, "GLACIER")]


def test_cli_bad_input_exit_2(cli, moto_env: str) -> None:
    result = cli("sync", "archive", "--remote", "s3://archive-x/p", "--older-than", "2w", "--yes")
    assert result.exit_code == 2 and result.stderr.startswith("error: --older-than")
    result = cli("sync", "archive", "--remote", "s3://no-such-archive-bucket/p", "--yes")
    assert result.exit_code == 2 and "does not exist" in result.stderr
