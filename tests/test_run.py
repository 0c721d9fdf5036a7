"""``multitype run`` (what ``make demo`` runs): prepare, baselines, transformer and report in one command.

On 20 real BBC articles per class, with the packaged MiniLM cut to 32 tokens
and 3 optimizer steps, so the whole pipeline runs in well under a minute.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from multitype import layout
from multitype.config import default_yaml
from multitype.evaluate import SUMMARY_COLUMNS
from multitype.predictor import load_predictor
from tests.conftest import BBC_4CLASS, make_bbc_subset, write_configs

LABELS = list(BBC_4CLASS)
MODELS = ("logreg", "linear_svm", "minilm")
STAGES = ("prepare", "train baseline", "train transformer", "report")


def _configs(folder: Path, data: Path) -> Path:
    data_config = yaml.safe_load(default_yaml("data"))
    data_config["input"] = str(data)
    transformer = yaml.safe_load(default_yaml("transformer"))
    transformer["run"] = {"model_name": "minilm", "max_length": 32, "batch_size": 8, "max_steps": 3,
                          "num_epochs": 1, "precision": "fp32", "warmup_ratio": 0.0,
                          "checkpoint": {"every_steps": 2, "every_minutes": None, "keep_last_epochs": 1}}
    return write_configs(folder, data=yaml.safe_dump(data_config, sort_keys=False),
                         transformer=yaml.safe_dump(transformer, sort_keys=False))


@pytest.fixture
def one_torch_thread():
    """One torch thread, as in tests/transformer: on 2 shared cores, two threads contend and run slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_run_builds_every_artifact_of_the_pipeline(tmp_path: Path, cli, one_torch_thread) -> None:
    data = make_bbc_subset(tmp_path / "bbc", per_class=20, seed=5)
    configs = _configs(tmp_path / "configs", data)
    root = tmp_path / "root"

    res = cli("run", "--root", root, "--config-dir", configs)
    assert res.exit_code == 0, res.stderr
    for stage in ("1/4 prepare", "2/4 baselines", "3/4 transformer (minilm)", "4/4 report"):
        assert stage in res.stderr, stage

    # data: the splits of the 80 articles (minus duplicates dropped by the audit) and the audit
    splits = {s: pd.read_csv(root / layout.processed_split(s, 4), keep_default_na=False) for s in layout.SPLITS}
    assert sorted(json.loads((root / layout.LABELS).read_text()), key=LABELS.index) == LABELS
    assert 70 <= sum(len(f) for f in splits.values()) <= 80
    assert all(set(f["label"]) == set(LABELS) for f in splits.values())
    assert json.loads((root / layout.AUDIT).read_text())["labels"] == LABELS

    # metrics: one file per model, the test split, sane figures
    records = {}
    for name in MODELS:
        key = layout.transformer_metrics(name) if name == "minilm" else layout.baseline_metrics(name)
        record = records[name] = json.loads((root / key).read_text())
        assert record["model"] == name and record["split"] == "test"
        assert record["splits"]["test"]["num_samples"] == len(splits["test"])
        assert 0 <= record["accuracy"] <= 1 and 0 <= record["macro_f1"] <= 1
        assert record["confusion_matrix"]["labels"] == LABELS
        assert sum(map(sum, record["confusion_matrix"]["matrix"])) == len(splits["test"])
        assert record["training_seconds"] > 0 and record["inference_samples_per_s"] > 0
    # 16 training articles a class: the baselines already beat chance (0.25); 3 steps of MiniLM need not
    assert records["logreg"]["accuracy"] >= 0.5 and records["linear_svm"]["accuracy"] >= 0.5
    assert records["minilm"]["global_step"] == 3 and records["minilm"]["params"]["max_length"] == 32

    # summaries rebuilt from the metrics files
    baseline = pd.read_csv(root / layout.BASELINE_SUMMARY)
    transformer = pd.read_csv(root / layout.TRANSFORMER_SUMMARY)
    assert list(baseline.columns) == SUMMARY_COLUMNS == list(transformer.columns)
    assert sorted(baseline["model"]) == ["linear_svm", "logreg"] and transformer["model"].tolist() == ["minilm"]
    for frame in (baseline, transformer):
        for row in frame.itertuples():
            assert row.accuracy == pytest.approx(records[row.model]["accuracy"])

    # the report names every model with its test accuracy and interval, lists its errors, has an HTML twin
    report = (root / layout.REPORT).read_text()
    for name, record in records.items():
        low, high = record["intervals"]["accuracy"]
        assert f"`{name}`" in report and f"{record['accuracy']:.3f} [{low:.3f}, {high:.3f}]" in report, name
        assert (root / layout.errors_csv(name)).is_file()
    assert (root / layout.figure_results("model_comparison")).read_bytes()[:4] == b"\x89PNG"
    assert (root / layout.figure_results("learning_minilm")).read_bytes()[:4] == b"\x89PNG"
    assert "data:image/png;base64," in (root / layout.REPORT_HTML).read_text()

    # final models: complete folders that load and predict
    texts = splits["test"]["text"].tolist()[:4]
    for name in MODELS:
        folder = root / layout.final_model(name)
        assert (folder / "_COMPLETE").is_file(), name
        predicted, scores = load_predictor(folder).predict(texts)
        assert set(predicted) <= set(LABELS) and scores.shape == (len(texts), 4)

    # one manifest per stage; each hash matches the file on disk
    manifests = [json.loads(p.read_text()) for p in (root / layout.RUNS).glob("*/manifest.json")]
    assert sorted(m["command"] for m in manifests) == sorted(STAGES)
    for manifest in manifests:
        assert manifest["outputs"], manifest["command"]
        for key, digest in manifest["outputs"].items():
            if (root / key).is_file():  # the outputs of a later stage may replace an earlier one's
                if key in (layout.BASELINE_SUMMARY, layout.TRANSFORMER_SUMMARY) and manifest["command"] != "report":
                    continue
                assert _sha256(root / key) == digest, (manifest["command"], key)
    report_manifest = next(m for m in manifests if m["command"] == "report")
    assert layout.REPORT in report_manifest["outputs"]
    assert {layout.baseline_metrics("logreg"), layout.transformer_metrics("minilm")} <= set(report_manifest["inputs"])
