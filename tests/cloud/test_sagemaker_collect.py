"""``multitype sagemaker collect``: a Completed job's results and model from S3 (SeaweedFS) into the local root.

The job itself is in moto (Completed at once); what it would have written to its
``root`` (metrics JSON, summary CSV, run manifest, ``result.json``) and what
SageMaker would have uploaded (``model.tar.gz`` of SM_MODEL_DIR) are put into
SeaweedFS by the test, as CONTRACT 5 describes them. Only the Failed path edits
the DescribeTrainingJob answer at our client (``after-call`` hook).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from multitype import layout
from multitype.evaluate import classification_metrics, metrics_record, predictions_block
from multitype.storage import Storage
from tests.cloud.jobs_helpers import create_job, edit_describe, set_status

JOB = "multitype-minilm-20261201T101500Z"
LABELS = ["business", "sport", "tech"]


def _record(model: str, run_id: str, y_pred: list[int]) -> dict[str, Any]:
    """A metrics record in the shared schema, computed by our own metrics code from real predictions."""
    y_true = [0, 0, 1, 1, 2, 2]
    splits = {s: classification_metrics(y_true, y_pred, LABELS) for s in ("val", "test")}
    texts = [f"article {i}" for i in range(len(y_true))]
    return metrics_record(model, "transformer", LABELS, splits, run_id, 12.5, 300.0,
                          predictions=predictions_block(texts, y_true, y_pred, np.eye(3)[y_pred]))


def _tar(files: dict[str, bytes], arcroot: str = ".") -> bytes:
    """A model.tar.gz as SageMaker packs SM_MODEL_DIR (``tar -czf model.tar.gz -C model .``)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        root = tarfile.TarInfo(arcroot)
        root.type, root.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(root)
        for name, data in files.items():
            info = tarfile.TarInfo(f"{arcroot}/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


MODEL = {"config.json": b'{"model_type": "bert", "id2label": {"0": "business"}}', "model.safetensors": b"\x00" * 64,
         "model.json": b'{"kind": "transformer"}'}


@pytest.fixture
def job(s3_server, aws_env, tmp_path: Path, config_dir: Path) -> dict[str, Any]:
    """A Completed job in moto whose root in SeaweedFS holds what the entry script and SageMaker leave there."""
    remote_root = f"s3://{s3_server.make_bucket('collect')}/proj"
    create_job(JOB, root=remote_root)
    remote = Storage(remote_root)
    remote.write_json(layout.transformer_metrics("minilm"), _record("minilm", "sm-run", [0, 0, 1, 1, 2, 2]))
    remote.write_text(layout.TRANSFORMER_SUMMARY, "model,run_id\nminilm,sm-run\n")
    remote.write_json(layout.manifest("sm-run"), {"run_id": "sm-run", "command": "train transformer"})
    result = {"job_name": JOB, "task": "transformer", "run_ids": ["sm-run"], "finished_at": "2026-12-01T11:00:00Z",
              "models": {"minilm": {"metrics": layout.transformer_metrics("minilm"), "model_dir": ""}}}
    remote.write_json(f"runs/sagemaker/{JOB}/result.json", result)
    remote.write_bytes(f"models/sagemaker/{JOB}/output/model.tar.gz", _tar(MODEL))
    local = tmp_path / "root"
    local.mkdir()
    return {"remote": remote, "local": local, "args": ["--root", str(local), "--config-dir", str(config_dir)],
            "result": result}


def _local_run(local: Path) -> None:
    """A local run of the same model: metrics from another run and its final model."""
    (local / "results/transformer").mkdir(parents=True)
    (local / layout.transformer_metrics("minilm")).write_text(json.dumps(_record("minilm", "local-run",
                                                                                 [0, 1, 1, 1, 2, 0])))
    (local / "models/final/minilm").mkdir(parents=True)
    (local / "models/final/minilm/config.json").write_text('{"local": true}')


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_collect_beside_a_local_run_then_report_shows_both(job, cli) -> None:
    local = job["local"]
    _local_run(local)
    before = {k: v for k, v in _tree(local).items()}
    res = cli("sagemaker", "collect", JOB, *job["args"])
    assert res.exit_code == 0, res.stderr
    name = f"minilm@{JOB}"
    assert f"(as {name}: the local root has another run of minilm; --force replaces it)" in res.stderr
    after = _tree(local)
    assert all(after[k] == v for k, v in before.items())  # the local run is untouched

    collected = json.loads((local / layout.transformer_metrics(name)).read_text())
    assert collected["model"] == name and collected["run_id"] == "sm-run" and collected["sagemaker_job"] == JOB
    assert collected["accuracy"] == 1.0
    model = local / layout.final_model(name)
    assert {p.name for p in model.iterdir()} == {"config.json", "model.safetensors", "model.json", "_COMPLETE"}
    assert (model / "model.safetensors").read_bytes() == MODEL["model.safetensors"]
    assert json.loads((local / layout.manifest("sm-run")).read_text())["run_id"] == "sm-run"
    assert json.loads((local / f"runs/sagemaker/{JOB}/result.json").read_text()) == job["result"]
    summary = pd.read_csv(local / layout.TRANSFORMER_SUMMARY)
    assert sorted(summary["model"]) == ["minilm", name] and sorted(summary["run_id"]) == ["local-run", "sm-run"]

    res = cli("report", *job["args"])
    assert res.exit_code == 0, res.stderr
    report = (local / layout.REPORT).read_text()
    assert "| `minilm` |" in report and f"| `{name}` |" in report
    assert (local / layout.figure_results(f"confusion_{name}")).is_file()
    assert (local / layout.figure_results("confusion_minilm")).is_file()
    # the job's per-text predictions came with its metrics: paired with the local run, errors listed
    assert collected["predictions"]["y_pred"] == [0, 0, 1, 1, 2, 2]
    assert f"### Paired comparisons against `{name}`" in report and "| `minilm` | 2 of 6 | 2 | 0 | 0.50 |" in report
    assert pd.read_csv(local / layout.errors_csv(name)).empty
    assert pd.read_csv(local / layout.errors_csv("minilm"))["index"].tolist() == [1, 5]

    # collecting again keeps the name it got, replacing only its own files
    res = cli("sagemaker", "collect", JOB, *job["args"])
    assert res.exit_code == 0, res.stderr
    assert sorted(pd.read_csv(local / layout.TRANSFORMER_SUMMARY)["model"]) == ["minilm", name]


def test_collect_into_a_fresh_root_and_force(job, cli) -> None:
    local = job["local"]
    res = cli("sagemaker", "collect", JOB, *job["args"])  # nothing local: the plain slug
    assert res.exit_code == 0, res.stderr
    assert json.loads((local / layout.transformer_metrics("minilm")).read_text())["model"] == "minilm"
    assert (local / "models/final/minilm/config.json").read_bytes() == MODEL["config.json"]
    # a local run replaces it; collecting again does not overwrite that run
    (local / layout.transformer_metrics("minilm")).write_text(json.dumps(_record("minilm", "local-2", [0] * 6)))
    res = cli("sagemaker", "collect", JOB, *job["args"])
    assert res.exit_code == 0, res.stderr
    assert json.loads((local / layout.transformer_metrics("minilm")).read_text())["run_id"] == "local-2"
    assert json.loads((local / layout.transformer_metrics(f"minilm@{JOB}")).read_text())["run_id"] == "sm-run"

    other = Path(str(local) + "-2")
    _local_run(other)
    args = ["--root", str(other), *job["args"][2:]]
    res = cli("sagemaker", "collect", JOB, "--force", *args)
    assert res.exit_code == 0, res.stderr
    assert json.loads((other / layout.transformer_metrics("minilm")).read_text())["run_id"] == "sm-run"
    assert (other / "models/final/minilm/config.json").read_bytes() == MODEL["config.json"]
    assert not list((other / "results/transformer").glob("*@*"))


def test_collect_a_parallel_job_with_one_folder_per_model(job, cli) -> None:
    remote, local = job["remote"], job["local"]
    models = {}
    for slug in ("minilm", "org__tiny-bert"):
        remote.write_json(layout.transformer_metrics(slug), _record(slug.replace("__", "/"), "sm-run", [0, 0, 1, 1, 2, 1]))
        models[slug] = {"metrics": layout.transformer_metrics(slug), "model_dir": slug}
    remote.write_json(f"runs/sagemaker/{JOB}/result.json", {**job["result"], "task": "parallel", "models": models})
    remote.write_bytes(f"models/sagemaker/{JOB}/output/model.tar.gz", _tar(
        {f"{slug}/{name}": data for slug in models for name, data in MODEL.items()}))
    res = cli("sagemaker", "collect", JOB, *job["args"])
    assert res.exit_code == 0, res.stderr
    for slug in models:
        assert (local / layout.final_model(slug) / "config.json").read_bytes() == MODEL["config.json"]
    assert sorted(pd.read_csv(local / layout.TRANSFORMER_SUMMARY)["model"]) == ["minilm", "org/tiny-bert"]


def _hostile(kind: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        ok = tarfile.TarInfo("config.json")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"{}"))
        bad = tarfile.TarInfo({"dotdot": "../x", "absolute": "/tmp/multitype-collect-x", "symlink": "link",
                               "hardlink": "hard"}[kind])
        if kind == "symlink":
            bad.type, bad.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            bad.type, bad.linkname = tarfile.LNKTYPE, "config.json"
        else:
            bad.size = 1
        tar.addfile(bad, io.BytesIO(b"x") if bad.size else None)
    return buf.getvalue()


@pytest.mark.parametrize("kind, why", [
    ("dotdot", "member '../x': it has a '.' or '..' segment"),
    ("absolute", "member '/tmp/multitype-collect-x': it is absolute"),
    ("symlink", "member 'link': it is a link (to '/etc/passwd')"),
    ("hardlink", "member 'hard': it is a link (to 'config.json')"),
])
def test_hostile_model_archive_is_refused(job, cli, tmp_path, kind, why) -> None:
    local = job["local"]
    _local_run(local)
    before = _tree(local)
    job["remote"].write_bytes(f"models/sagemaker/{JOB}/output/model.tar.gz", _hostile(kind))
    res = cli("sagemaker", "collect", JOB, *job["args"])
    url = f"{job['remote'].url()}/models/sagemaker/{JOB}/output/model.tar.gz"
    assert res.exit_code == 2 and res.stderr.splitlines()[0] == f"downloading {url}"
    error = res.stderr.splitlines()[1:]
    assert len(error) == 1 and error[0].startswith(f"error: refusing to unpack {url}: {why}")
    assert "; nothing was written: the archive must hold only files and folders" in error[0]
    assert _tree(local) == before
    assert not (tmp_path / "x").exists() and not Path("/tmp/multitype-collect-x").exists()


def test_collect_refuses_unfinished_or_resultless_jobs(job, cli) -> None:
    with edit_describe(set_status("Failed", FailureReason="AlgorithmError")):
        res = cli("sagemaker", "collect", JOB, *job["args"])
    assert res.exit_code == 2
    assert res.stderr.strip() == (f"error: training job {JOB} is Failed, not Completed: nothing to collect "
                                  f"(see 'multitype sagemaker status {JOB}')")

    job["remote"].rm(f"runs/sagemaker/{JOB}/result.json")
    res = cli("sagemaker", "collect", JOB, *job["args"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert res.stderr.startswith(f"error: {job['remote'].url()}/runs/sagemaker/{JOB}/result.json not found: "
                                 f"training job {JOB} ended Completed but wrote no result.json")
    assert not any(job["local"].iterdir())
