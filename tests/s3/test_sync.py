"""``multitype sync``: incremental push/pull against a real S3 server (SeaweedFS)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest

from multitype.cloud.bundle import code_files, write_tarball
from multitype.errors import StorageError, UserError
from multitype.sync import STATE_KEY, sync
from tests.conftest import write_configs


def make_tree(root: Path, n_small: int = 6) -> Path:
    """A small local root in the artifact layout."""
    write_configs(root / "configs")
    (root / "data/raw").mkdir(parents=True)
    (root / "data/raw/raw_data.json").write_text('[{"text": "a", "label": "x"}]\n')
    (root / "data/processed").mkdir(parents=True)
    for i in range(n_small):
        (root / f"data/processed/part{i}.csv").write_text("text,label\n" + f"row {i},x\n" * (i + 1))
    (root / "results/baseline").mkdir(parents=True)
    (root / "results/baseline/logreg_metrics.json").write_text('{"accuracy": 0.9}\n')
    (root / "models/final/m").mkdir(parents=True)
    (root / "models/final/m/weights.bin").write_bytes(os.urandom(200_000))
    (root / "notes.txt").write_text("not part of any sync group")
    return root


def files_under(root: Path, groups=("configs", "data", "results", "models")) -> dict[str, bytes]:
    out = {}
    for group in groups:
        for path in sorted((root / group).rglob("*")):
            if path.is_file():
                out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


@pytest.fixture
def remote(s3_server) -> str:
    return f"s3://{s3_server.make_bucket('sync')}/proj"


def bucket_of(url: str) -> str:
    return url[len("s3://"):].split("/", 1)[0]


def test_push_writes_plain_keys_then_nothing_when_unchanged(tmp_path: Path, remote: str, s3_server) -> None:
    local = make_tree(tmp_path / "local")
    first = sync("push", local, remote, only="data,configs,results,models")
    expected = sorted(files_under(local))
    assert first.uploaded == expected and not first.skipped
    # the bucket holds exactly the relative paths under the prefix: no wrapper, no metadata object
    assert s3_server.list_keys(bucket_of(remote)) == sorted(f"proj/{k}" for k in expected)
    assert (local / STATE_KEY).is_file()

    again = sync("push", local, remote, only="data,configs,results,models")
    assert again.uploaded == [] and again.skipped == expected


def test_change_one_file_uploads_exactly_one(tmp_path: Path, remote: str, s3_server) -> None:
    local = make_tree(tmp_path / "local")
    sync("push", local, remote)
    target = local / "data/processed/part2.csv"
    same_size = target.read_text().replace("row", "ROW")  # same size, other content
    target.write_text(same_size)
    os.utime(target, ns=(target.stat().st_mtime_ns, target.stat().st_mtime_ns - 10**9))  # even older mtime
    result = sync("push", local, remote)
    assert result.uploaded == ["data/processed/part2.csv"]
    body = s3_server.client().get_object(Bucket=bucket_of(remote), Key="proj/data/processed/part2.csv")["Body"]
    assert body.read().decode() == same_size


def test_pull_into_empty_folder_then_in_sync_both_ways(tmp_path: Path, remote: str) -> None:
    src = make_tree(tmp_path / "src")
    sync("push", src, remote)
    dest = tmp_path / "fresh"
    pulled = sync("pull", dest, remote)
    assert files_under(dest) == files_under(src)
    umask = os.umask(0o022)
    os.umask(umask)
    assert {p.stat().st_mode & 0o777 for p in (dest / "data").rglob("*") if p.is_file()} == {0o666 & ~umask}
    assert pulled.downloaded == sorted(files_under(src))
    # pulled files carry LastModified as mtime and are not downloaded or uploaded again
    assert sync("pull", dest, remote).downloaded == []
    assert sync("push", dest, remote).uploaded == []
    (dest / STATE_KEY).unlink()  # without the state file: checksums decide, not times
    assert sync("pull", dest, remote).downloaded == []
    assert sync("push", dest, remote).uploaded == []


def test_dry_run_moves_nothing(tmp_path: Path, remote: str, s3_server) -> None:
    local = make_tree(tmp_path / "local")
    lines: list[str] = []
    result = sync("push", local, remote, dry_run=True, log=lines.append)
    assert result.uploaded == sorted(files_under(local)) and result.dry_run
    assert lines[0].startswith("(dry run) upload: ")
    assert s3_server.list_keys(bucket_of(remote)) == []
    sync("push", local, remote)
    (local / "results/baseline/logreg_metrics.json").unlink()
    planned = sync("push", local, remote, delete=True, dry_run=True)
    assert planned.deleted == ["results/baseline/logreg_metrics.json"]
    assert "proj/results/baseline/logreg_metrics.json" in s3_server.list_keys(bucket_of(remote))


def test_delete_is_opt_in_both_ways(tmp_path: Path, remote: str, s3_server) -> None:
    local = make_tree(tmp_path / "local")
    sync("push", local, remote)
    (local / "data/processed/part0.csv").unlink()
    assert sync("push", local, remote).deleted == []
    assert "proj/data/processed/part0.csv" in s3_server.list_keys(bucket_of(remote))
    assert sync("push", local, remote, delete=True).deleted == ["data/processed/part0.csv"]
    assert "proj/data/processed/part0.csv" not in s3_server.list_keys(bucket_of(remote))

    other = tmp_path / "other"
    sync("pull", other, remote)
    (other / "data/extra.txt").write_text("local only")
    assert sync("pull", other, remote).deleted == []
    assert sync("pull", other, remote, delete=True).deleted == ["data/extra.txt"]
    assert not (other / "data/extra.txt").exists()


def test_only_limits_groups(tmp_path: Path, remote: str, s3_server) -> None:
    local = make_tree(tmp_path / "local")
    result = sync("push", local, remote, only="configs")
    assert result.uploaded and all(k.startswith("configs/") for k in result.uploaded)
    with pytest.raises(UserError, match="unknown group.*'nope'"):
        sync("push", local, remote, only="configs,nope")


def test_only_code_pushes_src_pinned_requirements_and_the_commit(cli, tmp_path: Path, remote: str, s3_server) -> None:
    local = tmp_path / "proj"
    (local / "src/multitype").mkdir(parents=True)
    (local / "src/multitype/__init__.py").write_text("VERSION = 1\n")
    (local / "src/multitype/__pycache__").mkdir()
    (local / "src/multitype/__pycache__/x.cpython-311.pyc").write_bytes(b"\0")
    (local / "pyproject.toml").write_text("[project]\nname = 'multitype'\n")
    git = ["git", "-C", str(local), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "src", "pyproject.toml"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()

    result = cli("sync", "push", "--local", local, "--remote", remote, "--only", "code",
                 "--config-dir", tmp_path / "none")
    assert result.exit_code == 0, result.stderr
    keys = s3_server.list_keys(bucket_of(remote), "proj/code/")
    assert keys == ["proj/code/bundle.json", "proj/code/pyproject.toml", "proj/code/requirements.txt",
                    "proj/code/src/multitype/__init__.py"]
    client = s3_server.client()
    pins = client.get_object(Bucket=bucket_of(remote), Key="proj/code/requirements.txt")["Body"].read()
    lines = pins.decode().splitlines()
    assert any(line.lower().startswith("torch==") for line in lines)
    assert any(line.lower().startswith("s3fs==") for line in lines)
    assert not any(line.lower().startswith("multitype==") for line in lines)
    assert not any("+" in line for line in lines if not line.startswith("#"))
    info = json.loads(client.get_object(Bucket=bucket_of(remote), Key="proj/code/bundle.json")["Body"].read())
    assert info["commit"] == head and info["dirty"] is False
    assert sync("push", local, remote, only="code", code_files=code_files(local)).uploaded == []

    (local / "src/multitype/__init__.py").write_text("VERSION = 2\n")  # an uncommitted change is recorded
    assert sync("push", local, remote, only="code", code_files=code_files(local)).uploaded == [
        "code/bundle.json", "code/src/multitype/__init__.py"]
    info = json.loads(client.get_object(Bucket=bucket_of(remote), Key="proj/code/bundle.json")["Body"].read())
    assert info["commit"] == head and info["dirty"] is True
    with pytest.raises(UserError, match="needs the bundle's files"):
        sync("push", local, remote, only="code")


def test_code_bundle_outside_git_and_as_a_tarball(tmp_path: Path) -> None:
    local = tmp_path / "proj"
    (local / "src/multitype").mkdir(parents=True)
    (local / "src/multitype/__init__.py").write_text("VERSION = 1\n")
    files = code_files(local)
    info = json.loads(files["code/bundle.json"].read_text())
    assert info["commit"] is None and info["dirty"] is None
    first = write_tarball(files, tmp_path / "a/sourcedir.tar.gz").read_bytes()
    assert write_tarball(code_files(local), tmp_path / "b/sourcedir.tar.gz").read_bytes() == first  # reproducible
    with tarfile.open(tmp_path / "a/sourcedir.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["bundle.json", "requirements.txt", "src/multitype/__init__.py"]


def test_reads_objects_written_like_aws_s3_sync(tmp_path: Path, remote: str, s3_server) -> None:
    """aws s3 sync uploads through s3transfer: 8 MiB multipart threshold and parts."""
    from boto3.s3.transfer import TransferConfig

    src = tmp_path / "aws"
    (src / "models/final/m").mkdir(parents=True)
    big = src / "models/final/m/model.safetensors"
    big.write_bytes(os.urandom(17 * 2**20))  # 3 parts of 8 MiB
    (src / "data").mkdir()
    (src / "data/small.txt").write_text("small\n")
    client = s3_server.client()
    config = TransferConfig(multipart_threshold=8 * 2**20, multipart_chunksize=8 * 2**20)
    for path in (big, src / "data/small.txt"):
        client.upload_file(str(path), bucket_of(remote), f"proj/{path.relative_to(src).as_posix()}", Config=config)
    head = client.head_object(Bucket=bucket_of(remote), Key="proj/models/final/m/model.safetensors")
    assert head["ETag"].strip('"').endswith("-3")

    dest = tmp_path / "pulled"
    assert sorted(sync("pull", dest, remote).downloaded) == ["data/small.txt", "models/final/m/model.safetensors"]
    assert (dest / "models/final/m/model.safetensors").read_bytes() == big.read_bytes()
    # the source tree (never synced by multitype) is recognised as identical by content,
    # even with mtimes newer than LastModified (which alone would make aws s3 sync upload)
    future = time.time() + 3600
    for path in (big, src / "data/small.txt"):
        os.utime(path, (future, future))
    assert sync("push", src, remote).uploaded == []
    big.write_bytes(os.urandom(17 * 2**20))  # same size, new content, newer mtime
    assert sync("push", src, remote).uploaded == ["models/final/m/model.safetensors"]


def test_server_stopped_mid_sync_then_restarted(tmp_path: Path, remote: str, s3_server,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    local = tmp_path / "local"
    (local / "data").mkdir(parents=True)
    for i in range(400):
        (local / f"data/f{i:03d}.bin").write_bytes(os.urandom(20_000 + i))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            sync("push", local, remote, jobs=4)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(s3_server.list_keys(bucket_of(remote), "proj/")) < 20:
        time.sleep(0.05)
    s3_server.stop()
    worker.join(timeout=120)
    assert not worker.is_alive()
    assert errors and isinstance(errors[0], StorageError), errors
    assert "\n" not in str(errors[0])

    s3_server.start()
    result = sync("push", local, remote, jobs=4)
    assert result.uploaded  # the rest went up this time
    client = s3_server.client()
    keys = s3_server.list_keys(bucket_of(remote), "proj/")
    assert keys == sorted(f"proj/data/f{i:03d}.bin" for i in range(400))
    for key in keys[::20]:  # content matches, nothing half-written
        body = client.get_object(Bucket=bucket_of(remote), Key=key)["Body"].read()
        assert hashlib.md5(body).digest() == hashlib.md5((local / key[len("proj/"):]).read_bytes()).digest()
    assert sync("push", local, remote).uploaded == []
