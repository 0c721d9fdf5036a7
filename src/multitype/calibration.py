"""Probability calibration: reliability bins and expected calibration error (ECE).

Each test text falls into one of ``bins`` equal-width bins by the probability of
its predicted class (its confidence); a calibrated model's accuracy in a bin
equals the bin's mean confidence. ECE is the text-weighted mean gap
``sum_b n_b / n * |accuracy_b - confidence_b|`` (Guo et al., 2017, "On
Calibration of Modern Neural Networks").
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def reliability(probabilities: Sequence[Sequence[float]] | np.ndarray, y_true: Sequence[int],
                bins: int = 10) -> dict[str, Any]:
    """Per-bin counts, mean confidence and accuracy, and the ECE.

    Parameters
    ----------
    probabilities : array of shape (texts, classes)
    y_true : class ids
    bins : int, default=10

    Returns
    -------
    dict
        ``edges`` (bins + 1), ``count``, ``confidence`` and ``accuracy`` per bin
        (``None`` for an empty bin), and ``ece``.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y_true)
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)  # 1.0 falls into the last bin
    count = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    hit_sum = np.bincount(which, weights=correct.astype(np.float64), minlength=bins)
    filled = count > 0
    mean_conf = np.divide(conf_sum, count, out=np.zeros(bins), where=filled)
    accuracy = np.divide(hit_sum, count, out=np.zeros(bins), where=filled)
    ece = float(np.sum(count / max(len(confidence), 1) * np.abs(accuracy - mean_conf)))
    return {"edges": np.linspace(0, 1, bins + 1).tolist(), "count": count.tolist(),
            "confidence": [float(v) if f else None for v, f in zip(mean_conf, filled)],
            "accuracy": [float(v) if f else None for v, f in zip(accuracy, filled)], "ece": ece}
