"""A short real fine-tuning run of the packaged MiniLM writes every artifact with the right schema."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from multitype.storage import Storage
from multitype.transformer import checkpoint
from tests.transformer.conftest import TINY

pytestmark = pytest.mark.slow  # every test here trains the real MiniLM (or reads a run that did)

LABELS = ["business", "politics", "sports", "tech"]


def test_metrics_summary_and_manifest(trained: tuple[Path, Path]) -> None:
    root, _ = trained
    record = json.loads((root / "results/transformer/minilm_metrics.json").read_text())
    assert record["model"] == "minilm" and record["kind"] == "transformer" and record["slug"] == "minilm"
    assert record["labels"] == LABELS and record["split"] == "test"
    assert set(record["splits"]) == {"val", "test"}
    assert record["splits"]["test"]["num_samples"] == 4 * TINY["test"]
    assert record["confusion_matrix"]["labels"] == LABELS
    assert sum(map(sum, record["confusion_matrix"]["matrix"])) == 4 * TINY["test"]
    assert set(record["per_class"]) == set(LABELS)
    for key in ("accuracy", "macro_f1", "weighted_f1"):
        assert 0.0 <= record[key] <= 1.0
    assert record["precision"] == "fp32" and record["device"].startswith("cpu")
    assert 22_000_000 < record["num_parameters"] < 23_000_000  # MiniLM-L6-H384 + a 4-way head
    assert record["train_samples_per_s"] > 0 and record["inference_samples_per_s"] > 0
    assert record["peak_memory_mb"] > 100 and record["training_seconds"] > 0
    assert record["global_step"] == 6 and record["epochs_trained"] == 2
    assert [h["epoch"] for h in record["history"]] == [1, 2]
    assert all("val_macro_f1" in h and "train_loss" in h for h in record["history"])

    summary = pd.read_csv(root / "results/transformer/transformer_summary.csv")
    assert summary["model"].tolist() == ["minilm"]
    assert summary.loc[0, "accuracy"] == record["accuracy"]

    manifest = json.loads((root / "runs" / record["run_id"] / "manifest.json").read_text())
    assert "results/transformer/minilm_metrics.json" in manifest["outputs"]
    assert "models/final/minilm/model.safetensors" in manifest["outputs"]
    assert "data/processed/train_4class.csv" in manifest["inputs"]
    assert manifest["params"]["max_length"] == 64


def test_checkpoints_follow_the_layout_and_verify(trained: tuple[Path, Path]) -> None:
    root, _ = trained
    folder = root / "models/checkpoints"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "minilm-best", "minilm-epoch1", "minilm-epoch2", "minilm-step2", "minilm-step4"]
    for tag, step in (("epoch1", 3), ("epoch2", 6), ("step2", 2), ("step4", 4)):
        state = checkpoint.verify(folder / f"minilm-{tag}")
        assert state["global_step"] == step and state["labels"] == LABELS and state["model_name"] == "minilm"
        assert state["params"]["batch_size"] == 8 and state["seed"] == 42
    best = checkpoint.verify(folder / "minilm-best", checkpoint.WEIGHT_FILES)
    assert best["global_step"] in (3, 6)
    assert not (folder / "minilm-best" / checkpoint.OPTIMIZER).exists()  # weights only
    storage = Storage(str(root))
    assert checkpoint.checkpoint_keys(storage, "minilm") == [
        f"models/checkpoints/minilm-{t}" for t in ("best", "epoch1", "epoch2", "step2", "step4")]


def test_final_model_loads_with_plain_transformers(trained: tuple[Path, Path]) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    root, _ = trained
    final = root / "models/final/minilm"
    info = json.loads((final / "model.json").read_text())
    assert info == {"kind": "transformer", "labels": LABELS, "model_name": "minilm", "max_length": 64}
    model = AutoModelForSequenceClassification.from_pretrained(final).eval()
    tokenizer = AutoTokenizer.from_pretrained(final)
    assert model.config.id2label == dict(enumerate(LABELS))
    assert model.config.label2id == {name: i for i, name in enumerate(LABELS)}

    # the plain model reproduces the recorded test accuracy
    test = pd.read_csv(root / "data/processed/test_4class.csv", keep_default_na=False)
    enc = tokenizer(test["text"].tolist(), truncation=True, max_length=64, padding=True, return_tensors="pt")
    with torch.no_grad():
        preds = model(**enc).logits.argmax(-1).tolist()
    accuracy = sum(model.config.id2label[p] == y for p, y in zip(preds, test["label"])) / len(test)
    record = json.loads((root / "results/transformer/minilm_metrics.json").read_text())
    assert abs(accuracy - record["accuracy"]) < 1e-9


def test_early_stopping_with_accumulation_class_weights_and_gradient_checkpointing(tmp_path: Path, cli) -> None:
    """A learning rate too small to change any prediction: val macro-F1 never improves, so patience 1 stops
    the 3-epoch run after epoch 2 (2 optimizer steps an epoch: 3 batches, 2 accumulated per step)."""
    from tests.conftest import write_configs
    from tests.transformer.conftest import train_args, transformer_yaml, write_processed

    root = write_processed(tmp_path / "root")
    configs = write_configs(tmp_path / "configs", transformer=transformer_yaml(
        num_epochs=3, learning_rate=1e-9, early_stopping_patience=1, gradient_accumulation_steps=2,
        class_weights="balanced", gradient_checkpointing=True))
    result = cli(*train_args(root, configs))
    assert result.exit_code == 0, result.stderr
    assert "early stopping: no improvement of val macro_f1 for 1 epoch(s)" in result.stderr
    assert "batch 8 x 2 accumulation" in result.stderr
    record = json.loads((root / "results/transformer/minilm_metrics.json").read_text())
    assert record["epochs_trained"] == 2 and record["global_step"] == 4 and record["best_epoch"] == 1
    assert record["history"][0]["val_macro_f1"] == record["history"][1]["val_macro_f1"]
    assert record["params"]["class_weights"] == "balanced" and record["params"]["gradient_checkpointing"] is True
    assert checkpoint.verify(root / "models/checkpoints/minilm-best", checkpoint.WEIGHT_FILES)["global_step"] == 2
