"""The SeaweedFS fixture itself: up, credentials enforced, restart keeps objects."""

from __future__ import annotations

import os

import pytest
from botocore.exceptions import ClientError


def test_server_serves_s3_with_env(s3_server) -> None:
    assert os.environ["AWS_ENDPOINT_URL"] == s3_server.endpoint_url
    bucket = s3_server.make_bucket()
    s3_server.client().put_object(Bucket=bucket, Key="a/b.txt", Body=b"hello")
    assert s3_server.list_keys(bucket) == ["a/b.txt"]


def test_readonly_identity_cannot_write(s3_server) -> None:
    bucket = s3_server.make_bucket()
    ro = s3_server.client(s3_server.readonly_access_key, s3_server.readonly_secret_key)
    with pytest.raises(ClientError) as err:
        ro.put_object(Bucket=bucket, Key="x", Body=b"x")
    assert err.value.response["Error"]["Code"] == "AccessDenied"


def test_restart_keeps_objects(s3_server) -> None:
    bucket = s3_server.make_bucket()
    s3_server.client().put_object(Bucket=bucket, Key="kept.txt", Body=b"kept")
    s3_server.restart()
    body = s3_server.client().get_object(Bucket=bucket, Key="kept.txt")["Body"].read()
    assert body == b"kept"
