"""Metrics shared by every model type (DESIGN.md section 4).

Schema 2 of ``*_metrics.json`` adds ``schema_version``, the test split's
bootstrap ``intervals`` (:mod:`multitype.stats`) and its per-text
``predictions`` (:func:`predictions_block`), which the report's paired tests,
error analysis and calibration read. Files without ``schema_version`` are
schema 1 and are still read.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from multitype.stats import bootstrap_intervals


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


SCHEMA_VERSION = 2
TEXT_CHARS = 200  # of each misclassified text, kept in the metrics JSON for the error analysis


def texts_fingerprint(texts: Sequence[str]) -> str:
    """sha256 of the texts in order: two records with the same one were scored on the same test texts."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def predictions_block(texts: Sequence[str], y_true: Sequence[int], y_pred: Sequence[int],
                      probabilities: np.ndarray | None = None, no_probabilities: str | None = None,
                      split: str = "test") -> dict[str, Any]:
    """The per-text predictions of a split, as stored in the metrics JSON (``predictions``).

    Parameters
    ----------
    texts, y_true, y_pred
        The split's texts in file order, their class ids and the predicted ids.
    probabilities : array of shape (texts, classes), optional
        Class probabilities (rounded to 6 decimals when stored).
    no_probabilities : str, optional
        Why there are none (e.g. a linear SVM gives decision scores), for the report.
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    wrong = np.flatnonzero(y_true != y_pred)
    return {"split": split, "num_samples": int(len(y_true)), "texts_sha256": texts_fingerprint(texts),
            "y_true": y_true.tolist(), "y_pred": y_pred.tolist(),
            "probabilities": None if probabilities is None else np.round(np.asarray(probabilities, dtype=np.float64),
                                                                         6).tolist(),
            "no_probabilities": None if probabilities is not None else no_probabilities,
            "misclassified_texts": {str(i): texts[i][:TEXT_CHARS] for i in wrong.tolist()}}


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

    ``splits`` maps ``val``/``test`` to :func:`classification_metrics` output;
    ``extra`` may carry ``predictions`` (:func:`predictions_block` of the headline
    split) and ``intervals`` (:func:`multitype.stats.bootstrap_intervals` of it).
    """
    headline = splits.get("test") or next(iter(splits.values()))
    return {
        "schema_version": SCHEMA_VERSION,
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


def headline_uncertainty(record_split: dict[str, Any], settings: Any, seed: int) -> dict[str, Any]:
    """Bootstrap intervals of a split's metrics with the ``report:`` settings of ``project.yaml``."""
    return bootstrap_intervals(record_split["confusion_matrix"]["matrix"], resamples=settings.resamples,
                               confidence=settings.confidence, seed=seed)
