"""The agreement check of an ONNX export: the same texts through PyTorch and ONNX Runtime.

Every text of the check set (the root's test split, or a labelled file) goes
through the folder's PyTorch model and through each exported ONNX model
(float32, and int8 when it was made), with the same tokenizer and length limit.
Per ONNX model the report holds the share of texts whose predicted label is the
same as PyTorch's (``label_agreement``, which must be at least
:data:`MIN_AGREEMENT`), the largest difference of any class probability, and
the test accuracy of each model against the true labels.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

MIN_AGREEMENT = 0.995


def _accuracy(predicted: Sequence[str], truth: Sequence[str]) -> float:
    return round(float(np.mean([p == t for p, t in zip(predicted, truth)])), 6)


def check_agreement(folder: Path, texts: Sequence[str], truth: Sequence[str], backends: Sequence[str],
                    batch_size: int = 32) -> dict[str, Any]:
    """Compare each ONNX backend of ``folder`` with its PyTorch model on ``texts``.

    Parameters
    ----------
    folder : Path
        A local transformer model folder with ``onnx/model.onnx`` (and ``model.int8.onnx``).
    texts, truth : sequence of str
        The check set: texts and their true labels.
    backends : sequence of str
        ``"onnx"`` and/or ``"onnx-int8"``.
    batch_size : int, default=32
        Texts per model call (all models get the same batches).

    Returns
    -------
    dict
        ``texts``, ``min_agreement``, ``passed`` (every backend at or above it), ``torch``
        (``accuracy``, ``samples_per_s``) and per backend ``label_agreement``,
        ``disagreements``, ``max_prob_diff``, ``accuracy``, ``accuracy_delta_points``
        (vs PyTorch, in percentage points) and ``samples_per_s``.
    """
    from multitype.onnx_predictor import OnnxPredictor
    from multitype.predictor import TransformerPredictor

    texts = list(texts)
    reference = TransformerPredictor(folder, device="cpu")
    start = time.perf_counter()
    ref_labels, ref_scores = reference.predict(texts, batch_size)
    ref_accuracy = _accuracy(ref_labels, truth)
    report: dict[str, Any] = {
        "texts": len(texts), "max_length": reference.max_length, "min_agreement": MIN_AGREEMENT,
        "torch": {"accuracy": ref_accuracy, "samples_per_s": round(len(texts) / (time.perf_counter() - start), 1)},
    }
    del reference
    passed = True
    for backend in backends:
        predictor = OnnxPredictor(folder, quantized=backend == "onnx-int8")
        start = time.perf_counter()
        labels, scores = predictor.predict(texts, batch_size)
        seconds = time.perf_counter() - start
        same = [a == b for a, b in zip(labels, ref_labels)]
        accuracy = _accuracy(labels, truth)
        report[backend] = {
            "file": predictor.onnx_file.relative_to(folder).as_posix(),
            "label_agreement": round(float(np.mean(same)), 6), "disagreements": len(same) - sum(same),
            "max_prob_diff": float(f"{np.abs(scores - ref_scores).max():.3g}"),
            "accuracy": accuracy, "accuracy_delta_points": round((accuracy - ref_accuracy) * 100, 3),
            "samples_per_s": round(len(texts) / seconds, 1),
        }
        passed = passed and report[backend]["label_agreement"] >= MIN_AGREEMENT
    report["passed"] = passed
    return report
