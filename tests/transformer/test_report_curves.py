"""A fine-tuned transformer's metrics JSON keeps its test predictions; the report draws its curves and calibration."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch

from multitype import layout
from multitype.calibration import reliability

pytestmark = pytest.mark.slow  # reads the session's real MiniLM run (~30 s once)


def test_predictions_are_the_final_models_softmax(trained: tuple[Path, Path]) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    root, _ = trained
    record = json.loads((root / layout.transformer_metrics("minilm")).read_text())
    assert record["schema_version"] == 2 and record["intervals"]["seed"] == record["seed"]
    block = record["predictions"]
    final = root / layout.final_model("minilm")
    model = AutoModelForSequenceClassification.from_pretrained(final).eval()
    tokenizer = AutoTokenizer.from_pretrained(final)
    test = pd.read_csv(root / layout.processed_split("test", 4), keep_default_na=False)
    enc = tokenizer(test["text"].tolist(), truncation=True, max_length=64, padding=True, return_tensors="pt")
    with torch.no_grad():
        probs = model(**enc).logits.softmax(-1).numpy()
    assert np.allclose(block["probabilities"], probs, atol=1e-4)
    assert block["y_pred"] == probs.argmax(1).tolist()
    assert [record["labels"][i] for i in block["y_true"]] == test["label"].tolist()


def test_report_draws_learning_curves_and_calibration(trained: tuple[Path, Path], tmp_path: Path, cli) -> None:
    src, configs = trained
    root = tmp_path / "root"
    shutil.copytree(src / "results", root / "results")
    res = cli("report", "--root", root, "--config-dir", configs)
    assert res.exit_code == 0, res.stderr
    for name in ("learning_minilm", "learning_curves", "calibration_minilm"):
        image = matplotlib.image.imread(root / layout.figure_results(name))
        assert image.shape[0] > 200 and image.shape[1] > 200
    report = (root / layout.REPORT).read_text()
    assert "## Training" in report and "![Learning curve minilm](../figures/results/learning_minilm.png)" in report
    record = json.loads((root / layout.transformer_metrics("minilm")).read_text())
    ece = reliability(record["predictions"]["probabilities"], record["predictions"]["y_true"])["ece"]
    assert re.search(rf"^\| `minilm` \| {ece:.4f} \| reliability diagram below \|$", report, re.M)
    assert "One model, `minilm`" in report
