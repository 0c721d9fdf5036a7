"""The entry point of ``multitype sagemaker prepare`` run locally on a fake ``/opt/ml/processing`` tree.

``test_container_command_writes_what_a_local_prepare_writes`` runs the request's real
``ContainerEntrypoint`` (``/bin/sh -c``: unpack the real sourcedir.tar.gz, ``pip install -r
requirements.txt``, ``python3 -m ...process_entry``) as a process, with the tree's base moved to a temp
folder and this virtual environment's ``python3`` first on PATH (pip finds every pinned requirement
installed: ``PIP_NO_INDEX`` keeps it off the network). What it leaves in ``output/`` (uploaded to the root
by SageMaker) must hold the same splits, byte for byte, and the same manifest hashes as a local
``multitype prepare`` of the same input. The other tests call the entry in-process for its error paths.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from multitype.cloud.sagemaker import process_entry
from multitype.cloud.sagemaker.processing import container_command
from multitype.cloud.sagemaker.sourcedir import build_sourcedir
from tests.cloud.test_sagemaker_prepare import bbc_jsonl
from tests.conftest import write_configs

SPLITS = ["data/processed/train_4class.csv", "data/processed/val_4class.csv", "data/processed/test_4class.csv",
          "data/processed/labels.json"]


def fake_tree(base: Path, raw: Path, configs: Path) -> Path:
    """``base`` filled as SageMaker Processing fills ``/opt/ml/processing`` from the request's inputs."""
    for name in ("code", "configs", "raw"):
        (base / "input" / name).mkdir(parents=True)
    for path in configs.glob("*.yaml"):
        shutil.copy(path, base / "input" / "configs" / path.name)
    shutil.copy(raw, base / "input" / "raw" / raw.name)
    (base / "output").mkdir()
    return base


def _manifest(root: Path) -> dict:
    [path] = list((root / "runs").glob("*/manifest.json"))
    return json.loads(path.read_text())


def test_container_command_writes_what_a_local_prepare_writes(tmp_path: Path, cli) -> None:
    raw = bbc_jsonl(tmp_path / "news.jsonl")
    configs = write_configs(tmp_path / "configs")
    base = fake_tree(tmp_path / "opt" / "ml" / "processing", raw, configs)
    tarball = build_sourcedir(tmp_path / "project").path  # this checkout's package, as launch packs it
    shutil.copy(tarball, base / "input" / "code" / tarball.name)

    command = container_command(tarball.name, base=str(base))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", process_entry.BASE_ENV: str(base)}
    env.pop("PYTHONPATH", None)  # the package comes from the unpacked sourcedir, as in the container
    done = subprocess.run([*command, "prepare", "--input-name", raw.name], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])["prepare"]
    assert summary["counts"]["train"]["total"] > 0
    assert (base / "input" / "code" / "src" / "multitype" / "__init__.py").is_file()  # unpacked there

    local = tmp_path / "local-root"
    res = cli("prepare", "--input", raw, "--root", local, "--config-dir", configs)
    assert res.exit_code == 0, res.stderr
    out = base / "output"
    for key in [*SPLITS, "data/raw/raw_data.json"]:
        assert (out / key).read_bytes() == (local / key).read_bytes(), key
    ours, theirs = _manifest(out), _manifest(local)
    assert {k: ours["outputs"][k] for k in SPLITS} == {k: theirs["outputs"][k] for k in SPLITS}
    assert set(ours["outputs"]) == set(theirs["outputs"])
    assert sorted(ours["inputs"].values()) == sorted(theirs["inputs"].values())  # the input's and raw copy's sha256
    assert ours["config"] == theirs["config"] and ours["prepare"]["counts"] == theirs["prepare"]["counts"]
    assert not (out / "data" / "processed" / ".pending").exists()  # nothing half-published is uploaded


def test_raw_copy_needs_force_and_is_not_uploaded_when_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    raw = bbc_jsonl(tmp_path / "news.jsonl")
    base = fake_tree(tmp_path / "opt" / "ml" / "processing", raw, write_configs(tmp_path / "configs"))
    monkeypatch.setenv(process_entry.BASE_ENV, str(base))
    current = tmp_path / "current" / "raw_data.json"
    current.parent.mkdir()
    current.write_text(json.dumps([{"text": "an older data set", "label": "tech"}]), encoding="utf-8")

    assert process_entry.main(["prepare", "--input-name", raw.name, "--current", str(current)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "pass --force to replace it" in err
    assert (tmp_path / "opt" / "ml" / "output" / "message").read_text() == err.strip()  # SageMaker's ExitMessage
    assert not (base / "output" / "data" / "processed").exists()

    assert process_entry.main(["prepare", "--input-name", raw.name, "--current", str(current), "--force"]) == 0
    replaced = base / "output" / "data" / "raw" / "raw_data.json"
    assert len(json.loads(replaced.read_text())) == 80  # the new raw copy, to be uploaded

    shutil.copy(replaced, current)  # the root has it now: a second run leaves it out of the upload
    shutil.rmtree(base / "output")
    assert process_entry.main(["prepare", "--input-name", raw.name, "--current", str(current)]) == 0
    assert not (base / "output" / "data" / "raw").exists()
    assert (base / "output" / "data" / "processed" / "train_4class.csv").is_file()


def test_missing_inputs_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    raw = bbc_jsonl(tmp_path / "news.jsonl", per_class=1)
    base = fake_tree(tmp_path / "processing", raw, write_configs(tmp_path / "configs"))
    monkeypatch.setenv(process_entry.BASE_ENV, str(base))
    assert process_entry.main(["prepare", "--input-name", "other.jsonl"]) == 2
    err = capsys.readouterr().err
    assert "raw input" in err and "other.jsonl not found (input/raw holds: news.jsonl)" in err
    for path in (base / "input" / "configs").iterdir():
        path.unlink()
    assert process_entry.main(["prepare", "--input-name", raw.name]) == 2
    assert "holds no config files" in capsys.readouterr().err
