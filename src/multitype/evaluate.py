"""Metrics shared by every model type (DESIGN.md section 4)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    label_names: Sequence[str],
) -> dict[str, Any]:
    """Accuracy, macro/weighted F1, per-class report and confusion matrix.

    ``y_true`` and ``y_pred`` are class ids indexing ``label_names``; every class
    appears in the report and the matrix even when it has no examples.
    """
    ids = list(range(len(label_names)))
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=ids, zero_division=0
    )
    return {
        "num_samples": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=ids, average="weighted", zero_division=0)),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(label_names)
        },
        "confusion_matrix": {
            "labels": list(label_names),
            "matrix": confusion_matrix(y_true, y_pred, labels=ids).tolist(),
        },
    }


def metrics_record(
    model: str,
    kind: str,
    label_names: Sequence[str],
    splits: dict[str, dict[str, Any]],
    run_id: str,
    training_seconds: float,
    inference_samples_per_s: float,
    **extra: Any,
) -> dict[str, Any]:
    """The ``*_metrics.json`` document: headline numbers are the test split's.

    ``splits`` maps ``val``/``test`` to :func:`classification_metrics` output.
    """
    headline = splits.get("test") or next(iter(splits.values()))
    return {
        "model": model,
        "kind": kind,
        "split": "test" if "test" in splits else next(iter(splits)),
        "accuracy": headline["accuracy"],
        "macro_f1": headline["macro_f1"],
        "weighted_f1": headline["weighted_f1"],
        "per_class": headline["per_class"],
        "confusion_matrix": headline["confusion_matrix"],
        "labels": list(label_names),
        "splits": splits,
        "training_seconds": round(float(training_seconds), 3),
        "inference_samples_per_s": round(float(inference_samples_per_s), 2),
        "run_id": run_id,
        **extra,
    }


SUMMARY_COLUMNS = ["model", "kind", "accuracy", "macro_f1", "weighted_f1", "val_accuracy", "val_macro_f1",
                   "training_seconds", "inference_samples_per_s", "run_id"]


def summary_row(record: dict[str, Any]) -> dict[str, Any]:
    """One row of ``baseline_summary.csv`` / ``transformer_summary.csv``."""
    val = record.get("splits", {}).get("val", {})
    row = {col: record.get(col) for col in SUMMARY_COLUMNS}
    row["val_accuracy"] = val.get("accuracy")
    row["val_macro_f1"] = val.get("macro_f1")
    return row
