"""Object keys that would land outside the download folder are refused before anything is written.

moto's S3 server stores keys such as ``m//tmp/x`` or ``m/a/../../x`` as AWS does
(SeaweedFS normalises them, so it cannot show the problem). A bucket someone
else can write to must not be able to place files on the machine that loads a
model, resumes a checkpoint or pulls a root.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import boto3
import pytest

from multitype.errors import StorageError
from multitype.storage import Storage

FOLDER = "models/final/m"


def tree(path: Path) -> set[str]:
    return {p.relative_to(path).as_posix() for p in path.rglob("*")} if path.exists() else set()


def hostile_suffixes(outside: Path) -> dict[str, str]:
    """Name -> key suffix under the folder; each escapes (or names) a path outside the destination."""
    return {
        "absolute": f"/{outside.as_posix().lstrip('/')}/v.txt",  # '<folder>//abs/path': an empty segment
        "dotdot": "a/../../outside/v.txt",
        "backslash": "a\\..\\..\\outside\\v.txt",
        "nul": "a\x00b.txt",
        "drive": "C:/outside/v.txt",
        "dot": "./v.txt",
    }


@pytest.fixture
def s3(moto_env: str):
    return boto3.client("s3", endpoint_url=moto_env, region_name="us-east-1")


def plant(s3, tmp_path: Path, name: str, folder: str) -> tuple[str, str, Path]:
    """A bucket whose ``proj/<folder>/`` holds a good file and one hostile key (and its normalised twin)."""
    bucket = f"hostile-{name}-{len(s3.list_buckets()['Buckets'])}"
    s3.create_bucket(Bucket=bucket)
    outside = tmp_path / "outside"
    suffix = hostile_suffixes(outside)[name]
    s3.put_object(Bucket=bucket, Key=f"proj/{folder}/config.json", Body=b"{}")
    s3.put_object(Bucket=bucket, Key=f"proj/{folder}/{suffix}", Body=b"payload")
    # what a normalising reader would fetch instead of the hostile key
    twin = "/".join(p for p in suffix.replace("\\", "/").split("/") if p not in ("", ".", ".."))
    s3.put_object(Bucket=bucket, Key=f"proj/{folder}/{twin}", Body=b"payload")
    return f"s3://{bucket}/proj", suffix, outside


def assert_refused(exc: pytest.ExceptionInfo[StorageError] | str, suffix: str) -> None:
    message = exc if isinstance(exc, str) else str(exc.value)
    assert "\n" not in message.strip(), message
    assert "refus" in message and repr(suffix)[1:-1] in message, message


NAMES = list(hostile_suffixes(Path("/x")))


@pytest.mark.parametrize("name", NAMES)
def test_get_dir_refuses_before_creating_anything(s3, tmp_path: Path, name: str) -> None:
    root, suffix, outside = plant(s3, tmp_path, name, FOLDER)
    before = tree(tmp_path)
    dest = tmp_path / "dest"
    with pytest.raises(StorageError) as exc:
        Storage(root).get_dir(FOLDER, dest)
    assert_refused(exc, suffix)
    assert not outside.exists() and not dest.exists()
    assert tree(tmp_path) == before


@pytest.mark.parametrize("name", NAMES)
def test_local_dir_refuses_and_leaves_no_temp_folder(s3, tmp_path: Path, name: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root, suffix, outside = plant(s3, tmp_path, name, FOLDER)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with pytest.raises(StorageError) as exc:
        with Storage(root).local_dir(FOLDER):
            pytest.fail("a folder with a hostile key was handed out")
    assert_refused(exc, suffix)
    assert not outside.exists() and tree(scratch) == set()


@pytest.mark.parametrize("name", ["absolute", "dotdot", "backslash", "nul"])
def test_sync_pull_refuses_with_exit_2(cli, s3, tmp_path: Path, name: str) -> None:
    root, suffix, outside = plant(s3, tmp_path, name, "data/raw")
    dest = tmp_path / "dest"
    result = cli("sync", "pull", "--local", dest, "--remote", root, "--config-dir", tmp_path / "none")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert_refused(result.stderr, suffix)
    assert not outside.exists() and not dest.exists()


def test_predict_refuses_a_hostile_model_folder(cli, s3, tmp_path: Path, config_dir: Path) -> None:
    root, suffix, outside = plant(s3, tmp_path, "absolute", FOLDER)
    texts = tmp_path / "texts.txt"
    texts.write_text("some text\n")
    result = cli("predict", "--model", f"{root}/{FOLDER}", "--input", texts, "--output", tmp_path / "out.csv",
                 "--root", tmp_path / "root", "--config-dir", config_dir)
    assert result.exit_code == 2, result.stderr
    assert_refused(result.stderr, suffix)
    assert not outside.exists() and not (tmp_path / "out.csv").exists()


def test_a_folder_marker_object_is_not_a_hostile_key(s3, tmp_path: Path) -> None:
    """``<folder>/`` and ``<folder>/sub/`` placeholders (the S3 console's "Create folder") are skipped."""
    s3.create_bucket(Bucket="placeholders")
    objects = {"proj/m/": b"", "proj/m/sub/": b"", "proj/m/sub/w.bin": b"w", "proj/m/c.json": b"{}",
               "proj/m/_COMPLETE": b""}
    for key, body in objects.items():
        s3.put_object(Bucket="placeholders", Key=key, Body=body)
    dest = Storage("s3://placeholders/proj").get_dir("m", tmp_path / "m")
    assert tree(dest) == {"sub", "sub/w.bin", "c.json", "_COMPLETE"}
    assert (dest / "_COMPLETE").read_bytes() == b"" and (dest / "sub/w.bin").read_bytes() == b"w"


def test_resume_skips_a_checkpoint_with_a_hostile_key(s3, tmp_path: Path) -> None:
    from multitype.transformer import checkpoint

    key = "models/checkpoints/m-epoch1"
    root, suffix, outside = plant(s3, tmp_path, "absolute", key)
    with pytest.raises(checkpoint.InvalidCheckpoint) as exc:
        checkpoint.open_checkpoint(Storage(root), key)
    assert_refused(str(exc.value), suffix)
    assert not outside.exists()
