"""Run manifests record what produced what, and never a secret."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from multitype.manifest import code_version, scrub, scrub_argv, write_manifest
from multitype.project import open_project


def test_manifest_hashes_inputs_and_outputs(config_dir: Path, tmp_path: Path) -> None:
    project = open_project(str(tmp_path / "root"), str(config_dir), "test")
    project.storage.write_text("data/raw/raw_data.json", "[]")
    project.storage.write_text("results/x/a.json", "{}")
    key = write_manifest(project, inputs=["data/raw/raw_data.json"], outputs=["results/x"])
    manifest = json.loads((tmp_path / "root" / key).read_text())
    assert manifest["run_id"] == project.run_id and key == f"runs/{project.run_id}/manifest.json"
    assert manifest["inputs"]["data/raw/raw_data.json"] == hashlib.sha256(b"[]").hexdigest()
    assert manifest["outputs"] == {"results/x/a.json": hashlib.sha256(b"{}").hexdigest()}
    assert manifest["config"]["data"]["split"]["seed"] == 42
    assert manifest["seed"] == 42 and "packages" in manifest and "hardware" in manifest


def test_secrets_never_written() -> None:
    cleaned = scrub({"aws_secret_access_key": "abc", "token": "t", "nested": {"password": "p"},
                     "url": "https://user:pw@host/x", "region": "us-east-1"})
    text = json.dumps(cleaned)
    assert "abc" not in text and '"t"' not in text and '"p"' not in text and "pw@" not in text
    assert cleaned["region"] == "us-east-1"
    assert scrub_argv(["train", "--hf-token", "xyz", "--api-key=abc", "--root", "s3://b/p"]) == [
        "train", "--hf-token", "***", "--api-key=***", "--root", "s3://b/p"]


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


def _repo_with_package(folder: Path) -> tuple[Path, str]:
    """A git checkout holding ``src/multitype/__init__.py``; returns (package folder, commit)."""
    package = folder / "src" / "multitype"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    _git(folder, "init", "-q")
    _git(folder, "add", ".")
    _git(folder, "commit", "-qm", "first")
    return package, _git(folder, "rev-parse", "HEAD")


def test_the_commit_is_the_package_checkouts_with_a_dirty_flag(tmp_path: Path) -> None:
    package, commit = _repo_with_package(tmp_path / "checkout")
    assert code_version(package) == {"commit": commit, "dirty": False, "source": "git"}
    (package / "__init__.py").write_text("# edited\n")
    assert code_version(package) == {"commit": commit, "dirty": True, "source": "git"}


def test_the_commit_of_a_pushed_code_bundle(tmp_path: Path) -> None:
    package = tmp_path / "code" / "src" / "multitype"  # what `sync push --only code` uploads
    package.mkdir(parents=True)
    (tmp_path / "code" / "bundle.json").write_text(json.dumps({"commit": "0123abc", "dirty": False}))
    assert code_version(package) == {"commit": "0123abc", "dirty": False, "source": "bundle"}


def test_never_the_commit_of_the_current_folder(tmp_path: Path, config_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _, other_commit = _repo_with_package(tmp_path / "another-project")
    monkeypatch.chdir(tmp_path / "another-project")
    # an installed package inside a venv that sits in someone's repository: untracked, so no commit
    installed = tmp_path / "another-project" / ".venv" / "site-packages" / "multitype"
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("")
    assert code_version(installed) is None
    project = open_project(str(tmp_path / "root"), str(config_dir), "test")
    manifest = json.loads((tmp_path / "root" / write_manifest(project)).read_text())
    assert manifest["git_commit"] != other_commit
    assert manifest["code"] == code_version()  # this package's own checkout (or None when installed)


def test_outputs_hashed_while_written_are_recorded_as_given(config_dir: Path, tmp_path: Path) -> None:
    project = open_project(str(tmp_path / "root"), str(config_dir), "test")
    results = tmp_path / "elsewhere"
    from multitype.storage import Storage

    key = write_manifest(project, output_hashes={"/opt/ml/model/model.safetensors": "ab" * 32},
                         storage=Storage(str(results)))
    manifest = json.loads((results / key).read_text())
    assert manifest["outputs"] == {"/opt/ml/model/model.safetensors": "ab" * 32}
    assert not (tmp_path / "root" / key).exists()
