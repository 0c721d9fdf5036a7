"""Run manifests record what produced what, and never a secret."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from multitype.manifest import scrub, scrub_argv, write_manifest
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
