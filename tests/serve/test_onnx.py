"""``multitype export onnx`` and the ONNX backends, on MiniLM fine-tuned for a few steps (real weights).

One session export (float32 + int8) of a copy of the fine-tuned model is shared by
the tests that only read it; the refusals and the S3 round trip export on their own.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from multitype import load_predictor
from multitype.errors import ModelError
from tests.serve.conftest import LABELS, TEXTS, Baseline, free_port
from tests.serve.test_cli import Server

LONG = " ".join(["The markets rallied as the bank's profits rose and shares climbed."] * 20)  # > 64 tokens


def _copy_model(project: Baseline, dest: Path) -> Path:
    return Path(shutil.copytree(project.folder, dest, ignore=shutil.ignore_patterns("onnx")))


def _one_line_error(res, code: int = 2) -> str:
    assert res.exit_code == code, (res.exit_code, res.stderr)
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr
    return res.stderr.removeprefix("error: ").rstrip("\n")


@pytest.fixture(scope="session")
def exported(minilm_project: Baseline, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A copy of the fine-tuned MiniLM with onnx/model.onnx and model.int8.onnx, and export's stderr."""
    import contextlib
    import io

    from multitype.cli import main

    folder = _copy_model(minilm_project, tmp_path_factory.mktemp("onnx") / "minilm")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["export", "onnx", "--model", str(folder), "--quantize", "int8", "--root", str(minilm_project.root),
                     "--config-dir", str(minilm_project.configs)])
    assert code == 0, err.getvalue()
    return folder, err.getvalue()


def test_export_writes_both_models_and_the_agreement(exported, minilm_project: Baseline) -> None:
    folder, stderr = exported
    assert sorted(p.name for p in (folder / "onnx").iterdir()) == [
        "_COMPLETE", "agreement.json", "model.int8.onnx", "model.onnx"]
    assert (folder / "onnx" / "model.int8.onnx").stat().st_size < (folder / "onnx" / "model.onnx").stat().st_size / 3
    report = json.loads((folder / "onnx" / "agreement.json").read_text())
    test = pd.read_csv(minilm_project.root / "data" / "processed" / "test_4class.csv")
    assert report["texts"] == len(test) and report["max_length"] == 64 and report["passed"] is True
    assert report["exporter"] == "torch.onnx (dynamo)" and report["min_agreement"] == 0.995
    torch_labels = load_predictor(minilm_project.folder).predict(list(test.text))[0]
    assert report["torch"]["accuracy"] == pytest.approx(np.mean(np.array(torch_labels) == test.label.to_numpy()))
    assert report["torch"]["accuracy"] >= 0.75  # a few steps of real training, not a random head
    for backend, tolerance in (("onnx", 1e-4), ("onnx-int8", 0.1)):
        r = report[backend]
        assert r["label_agreement"] >= 0.995 and r["disagreements"] == 0 and r["max_prob_diff"] <= tolerance
        assert r["accuracy"] == report["torch"]["accuracy"] and r["accuracy_delta_points"] == 0
    assert f"checked on {len(test)} texts of {minilm_project.root}/data/processed/test_4class.csv" in stderr
    assert "onnx/model.int8.onnx: labels agree on 100.00% (0 differ)" in stderr
    assert f"wrote onnx/model.onnx, onnx/model.int8.onnx, onnx/agreement.json in {folder}" in stderr


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_onnx_predictor_answers_like_torch(exported, backend: str) -> None:
    folder, _ = exported
    torch_p, onnx_p = load_predictor(folder), load_predictor(folder, backend=backend)
    assert (onnx_p.backend, onnx_p.kind, onnx_p.name) == (backend, "transformer", "minilm")
    assert onnx_p.labels == torch_p.labels == LABELS and onnx_p.max_length == torch_p.max_length == 64
    texts = [*TEXTS, LONG, "ok"]  # batch sizes 3 and 2, padding, a truncated text, a two-token one
    labels, scores = onnx_p.predict(texts, batch_size=3)
    ref_labels, ref_scores = torch_p.predict(texts, batch_size=3)
    # "ok" gets near-uniform probabilities from a model trained 8 steps: int8 may tip it either way
    assert labels[:-1] == ref_labels[:-1] and scores.dtype == np.float32
    assert np.allclose(scores.sum(axis=1), 1, atol=1e-5)
    assert np.abs(scores - ref_scores).max() < (1e-4 if backend == "onnx" else 0.1)
    assert onnx_p.truncated(texts) == torch_p.truncated(texts) == [False] * len(TEXTS) + [True, False]
    singles = np.concatenate([onnx_p.predict([t])[1] for t in texts])  # batch of one, no padding
    assert np.allclose(singles, scores, atol=1e-4 if backend == "onnx" else 0.05)


def test_predict_cli_backend_onnx_int8(exported, tmp_path: Path, config_dir: Path, cli) -> None:
    folder, _ = exported
    src = tmp_path / "texts.txt"
    src.write_text("\n".join([*TEXTS, LONG]) + "\n")
    outputs = {}
    for backend in ("torch", "onnx-int8"):
        res = cli("predict", "--model", folder, "--input", src, "--output", tmp_path / f"{backend}.csv",
                  "--backend", backend, "--root", tmp_path / "root", "--config-dir", config_dir)
        assert res.exit_code == 0, res.stderr
        outputs[backend] = pd.read_csv(tmp_path / f"{backend}.csv")
    assert "with transformer model" in res.stderr and "on onnx-int8" in res.stderr
    assert outputs["onnx-int8"].predicted_label.tolist() == outputs["torch"].predicted_label.tolist()
    assert list(outputs["onnx-int8"].columns) == list(outputs["torch"].columns)


@pytest.mark.slow
def test_serve_backend_onnx_answers_like_torch(exported, tmp_path: Path) -> None:
    folder, _ = exported
    torch_labels, _ = load_predictor(folder).predict([*TEXTS, LONG])
    port = free_port()
    server = Server(tmp_path, "--model", str(folder), "--port", str(port), "--backend", "onnx-int8",
                    "--no-access-log")
    try:
        url = server.wait_ready(port)
        assert "serving minilm (transformer on onnx-int8, version " in server.output
        assert httpx.get(f"{url}/health", timeout=30).json()["model"]["backend"] == "onnx-int8"
        body = httpx.post(f"{url}/predict", json={"texts": [*TEXTS, LONG]}, timeout=30).json()
        assert body["labels"] == torch_labels and body["truncated"] == [False] * len(TEXTS) + [True]
        one = httpx.post(f"{url}/invocations", json={"text": TEXTS[2]}, timeout=30).json()
        assert one["labels"] == [torch_labels[2]]
    finally:
        assert server.stop() == 0, server.output


def test_missing_export_and_bad_backends(minilm_project: Baseline, baseline, tmp_path: Path, config_dir: Path,
                                         cli) -> None:
    folder = minilm_project.folder  # trained, never exported
    assert not (folder / "onnx").exists()
    src = tmp_path / "texts.txt"
    src.write_text("one text\n")
    common = ("--input", src, "--root", tmp_path / "root", "--config-dir", config_dir)
    assert _one_line_error(cli("predict", "--model", folder, "--backend", "onnx-int8", *common)) == (
        f"{folder} has no onnx/model.int8.onnx; run 'multitype export onnx --model {folder} --quantize int8' first")
    assert _one_line_error(cli("serve", "--model", folder, "--backend", "onnx", "--port", str(free_port()))) == (
        f"{folder} has no onnx/model.onnx; run 'multitype export onnx --model {folder}' first")
    assert _one_line_error(cli("predict", "--model", baseline.folder, "--backend", "onnx", *common)) == (
        f"{baseline.folder} is a baseline (scikit-learn); the onnx backend runs transformers only: "
        "use the torch backend")
    assert _one_line_error(cli("predict", "--model", folder, "--backend", "tensorrt", *common)) == (
        "--backend must be one of: torch, onnx, onnx-int8; got 'tensorrt'")
    with pytest.raises(ModelError, match="backend must be one of: torch, onnx, onnx-int8; got 'onnx-fp16'"):
        load_predictor(folder, backend="onnx-fp16")
    assert not list(tmp_path.glob("*.predictions.csv"))


def test_export_refusals(minilm_project: Baseline, baseline, exported, tmp_path: Path, cli) -> None:
    root, configs = str(minilm_project.root), str(minilm_project.configs)
    folder, _ = exported
    before = {p.name: p.stat().st_mtime_ns for p in (folder / "onnx").iterdir()}
    assert _one_line_error(cli("export", "onnx", "--model", baseline.folder, "--root", root, "--config-dir", configs)) == (
        f"{baseline.folder} is a baseline (scikit-learn); ONNX export is for transformers, "
        "serve baselines with --backend torch")
    assert _one_line_error(cli("export", "onnx", "--model", folder, "--root", root, "--config-dir", configs)) == (
        f"{folder} already has onnx/model.onnx; pass --force to export it again")
    assert _one_line_error(cli("export", "onnx", "--model", folder, "--quantize", "int4")) == (
        "--quantize must be one of: int8; got 'int4'")
    assert _one_line_error(cli("export", "onnx", "--model", tmp_path / "nope", "--root", root, "--config-dir", configs)) == (
        f"model folder {tmp_path / 'nope'} not found; pass models/final/<name> (train a model first)")
    fresh = _copy_model(minilm_project, tmp_path / "fresh")
    empty_root = tmp_path / "elsewhere"
    assert _one_line_error(cli("export", "onnx", "--model", fresh, "--root", empty_root, "--config-dir", configs)) == (
        f"no test split at {empty_root}/data/processed/test_4class.csv to check the export on; pass --root of the "
        "project that trained the model, or --input FILE with text and label columns")
    assert not (fresh / "onnx").exists()
    assert {p.name: p.stat().st_mtime_ns for p in (folder / "onnx").iterdir()} == before


def test_export_that_disagrees_publishes_nothing(minilm_project: Baseline, tmp_path: Path, cli,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A check set given with --input; an agreement below the bar (here: an impossible bar) fails with exit 1."""
    from multitype.serve import onnx_check

    folder = _copy_model(minilm_project, tmp_path / "minilm")
    labelled = tmp_path / "check.csv"
    pd.DataFrame({"text": TEXTS[:4], "label": LABELS}).to_csv(labelled, index=False)
    monkeypatch.setattr(onnx_check, "MIN_AGREEMENT", 1.01)
    err = _one_line_error(cli("export", "onnx", "--model", folder, "--input", labelled, "--root", tmp_path / "root",
                              "--config-dir", minilm_project.configs), code=1)
    assert err == (f"onnx agrees with PyTorch on 100.0% of 4 texts (at least 101.0% needed; max probability "
                   f"difference {err.split('difference ')[1].split(')')[0]}); nothing was written to {folder}/onnx")
    assert not (folder / "onnx").exists() and not (tmp_path / "root" / "runs").exists()

    monkeypatch.undo()
    res = cli("export", "onnx", "--model", folder, "--input", labelled, "--root", tmp_path / "root",
              "--config-dir", minilm_project.configs)
    assert res.exit_code == 0, res.stderr
    report = json.loads((folder / "onnx" / "agreement.json").read_text())
    assert report["check_set"] == str(labelled) and report["texts"] == 4 and "onnx-int8" not in report
    [manifest] = [json.loads(m.read_text()) for m in (tmp_path / "root" / "runs").glob("*/manifest.json")]
    assert manifest["command"] == "export" and manifest["export_onnx"]["files"] == [
        "onnx/model.onnx", "onnx/agreement.json"]
    assert set(manifest["outputs"]) == {f"{folder}/onnx/{name}" for name in ("model.onnx", "agreement.json")}
    assert list(manifest["inputs"]) == [f"check set {labelled}"]


@pytest.mark.slow
def test_export_and_serve_an_s3_model(minilm_project: Baseline, s3_server, tmp_path: Path, cli) -> None:
    from multitype.storage import Storage

    bucket = s3_server.make_bucket("onnx")
    Storage(f"s3://{bucket}/proj").put_dir(minilm_project.folder, "models/final/minilm")
    url = f"s3://{bucket}/proj/models/final/minilm"
    res = cli("export", "onnx", "--model", url, "--quantize", "int8", "--root", minilm_project.root,
              "--config-dir", minilm_project.configs)
    assert res.exit_code == 0, res.stderr
    keys = s3_server.list_keys(bucket, "proj/models/final/minilm/onnx/")
    assert [k.rsplit("/", 1)[1] for k in keys] == ["_COMPLETE", "agreement.json", "model.int8.onnx", "model.onnx"]
    remote = load_predictor(url, backend="onnx-int8")
    assert remote.source == url and remote.backend == "onnx-int8"
    assert remote.predict(TEXTS)[0] == load_predictor(minilm_project.folder).predict(TEXTS)[0]
    assert not (minilm_project.folder / "onnx").exists()  # the local original is untouched
