"""Bad S3 input through the CLI: exit 2, one ``error:`` line, nothing deleted on either side."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from multitype.sync import sync
from tests.conftest import write_configs
from tests.s3.test_sync import files_under, make_tree


@pytest.fixture
def synced(tmp_path: Path, s3_server):
    """A local tree pushed to a fresh bucket; returns (local, remote, bucket, keys before)."""
    bucket = s3_server.make_bucket("errs")
    remote = f"s3://{bucket}/proj"
    local = make_tree(tmp_path / "local")
    sync("push", local, remote)
    (local / "data/processed/part0.csv").unlink()  # a push --delete would remove it remotely
    (local / "data/new.txt").write_text("new")  # and upload this
    return local, remote, bucket, s3_server.list_keys(bucket)


def assert_one_line_exit_2(result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def assert_untouched(local: Path, before_local: dict[str, bytes], s3_server, bucket: str, keys: list[str]) -> None:
    assert files_under(local) == before_local
    assert s3_server.list_keys(bucket) == keys


@pytest.mark.parametrize("remote,fragment", [
    ("s3://", "has no bucket"),
    ("s3:///prefix", "has no bucket"),
    ("s3://Bad_Bucket/x", "not a valid S3 bucket name"),
    ("s3://ab/x", "not a valid S3 bucket name"),
    ("s3://192.168.1.1/x", "not a valid S3 bucket name"),
    ("s3://fine-bucket/a/../../other", "'..'"),
    ("/tmp/not-s3", "is not an s3:// URL"),
])
def test_bad_remote_urls(cli, tmp_path: Path, remote: str, fragment: str) -> None:
    local = make_tree(tmp_path / "local")
    before = files_under(local)
    for command in ("push", "pull"):
        result = cli("sync", command, "--local", local, "--remote", remote, "--delete", "--config-dir", tmp_path / "none")
        assert_one_line_exit_2(result, fragment)
    assert files_under(local) == before


def test_no_remote_configured(cli, tmp_path: Path) -> None:
    configs = write_configs(tmp_path / "configs")
    result = cli("sync", "push", "--local", tmp_path, "--config-dir", configs)
    assert_one_line_exit_2(result, "--remote", "storage.remote")


def test_remote_from_project_yaml(cli, tmp_path: Path, s3_server) -> None:
    bucket = s3_server.make_bucket("cfg")
    configs = write_configs(tmp_path / "configs", project=f"storage: {{remote: s3://{bucket}/p}}\n")
    result = cli("sync", "push", "--local", tmp_path, "--only", "configs", "--config-dir", configs)
    assert result.exit_code == 0, result.stderr
    assert s3_server.list_keys(bucket) == sorted(f"p/configs/{p.name}" for p in configs.iterdir())


def test_missing_bucket(cli, synced, s3_server) -> None:
    local, _, bucket, keys = synced
    before = files_under(local)
    for command in ("push", "pull"):
        result = cli("sync", command, "--local", local, "--remote", "s3://no-such-bucket-here/p", "--delete")
        assert_one_line_exit_2(result, "bucket 'no-such-bucket-here' does not exist", "s3://no-such-bucket-here/p")
    assert_untouched(local, before, s3_server, bucket, keys)


def test_wrong_credentials(cli, synced, s3_server, monkeypatch: pytest.MonkeyPatch) -> None:
    local, remote, bucket, keys = synced
    before = files_under(local)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    for command in ("push", "pull"):
        result = cli("sync", command, "--local", local, "--remote", remote, "--delete")
        assert_one_line_exit_2(result, "rejected the credentials", remote, "AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    assert_untouched(local, before, s3_server, bucket, keys)


def test_no_credentials_at_all(cli, synced, s3_server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    local, remote, bucket, keys = synced
    before = files_under(local)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = cli("sync", "push", "--local", local, "--remote", remote, "--delete")
    assert_one_line_exit_2(result, "no usable AWS credentials", remote)
    assert_untouched(local, before, s3_server, bucket, keys)


def test_permission_denied_on_the_prefix(cli, synced, s3_server, monkeypatch: pytest.MonkeyPatch) -> None:
    local, remote, bucket, keys = synced
    before = files_under(local)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.readonly_access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.readonly_secret_key)
    result = cli("sync", "push", "--local", local, "--remote", remote, "--delete")
    assert_one_line_exit_2(result, "access denied", f"{remote}/data/new.txt")
    assert_untouched(local, before, s3_server, bucket, keys)
    # the same identity may read: a pull works
    pulled = cli("sync", "pull", "--local", local.parent / "copy", "--remote", remote)
    assert pulled.exit_code == 0, pulled.stderr


def test_endpoint_that_does_not_answer(cli, synced, s3_server, monkeypatch: pytest.MonkeyPatch) -> None:
    local, remote, bucket, keys = synced
    before = files_under(local)
    silent = socket.socket()  # accepts connections (backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    try:
        start = time.monotonic()
        result = cli("sync", "pull", "--local", local, "--remote", remote, "--delete")
        elapsed = time.monotonic() - start
    finally:
        silent.close()
    assert_one_line_exit_2(result, f"the S3 endpoint {endpoint} did not answer", remote, "AWS_ENDPOINT_URL")
    assert elapsed < 15, elapsed
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    assert_untouched(local, before, s3_server, bucket, keys)


def test_endpoint_refusing_connections(cli, synced, s3_server, monkeypatch: pytest.MonkeyPatch) -> None:
    local, remote, bucket, keys = synced
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there any more
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    result = cli("sync", "push", "--local", local, "--remote", remote)
    assert_one_line_exit_2(result, "cannot reach the S3 endpoint", remote)


def test_local_root_that_is_a_file(cli, synced, s3_server) -> None:
    local, remote, bucket, keys = synced
    afile = local / "notes.txt"
    for command in ("push", "pull"):
        result = cli("sync", command, "--local", afile, "--remote", remote, "--delete")
        assert_one_line_exit_2(result, "is a file", str(afile))
    assert afile.read_text() == "not part of any sync group"
    assert s3_server.list_keys(bucket) == keys


def test_bad_options(cli, tmp_path: Path) -> None:
    assert_one_line_exit_2(cli("sync", "push", "--local", tmp_path, "--remote", "s3://bucket-x/p", "--only", "weights"),
                           "unknown group", "'weights'")
    assert_one_line_exit_2(cli("sync", "push", "--jobs", "0", "--remote", "s3://bucket-x/p"), "--jobs")


@pytest.mark.parametrize("command", [("prepare",), ("train", "baseline"), ("report",)])
def test_pipeline_commands_on_a_bad_s3_root(cli, command, config_dir: Path, s3_server,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    missing = cli(*command, "--root", "s3://no-such-bucket-here/p", "--config-dir", config_dir)
    assert_one_line_exit_2(missing, "bucket 'no-such-bucket-here' does not exist")
    assert_one_line_exit_2(cli(*command, "--root", "s3://Not_A_Bucket/p", "--config-dir", config_dir),
                           "not a valid S3 bucket name")
    bucket = s3_server.make_bucket("badroot")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    assert_one_line_exit_2(cli(*command, "--root", f"s3://{bucket}/p", "--config-dir", config_dir),
                           "rejected the credentials")
    assert s3_server.list_keys(bucket) == []
