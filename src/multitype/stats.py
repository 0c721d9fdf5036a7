"""How sure a test score is: stratified bootstrap intervals and paired comparisons of two models.

The bootstrap resamples the test texts with replacement within each true class,
so every resample keeps the split's class counts. Accuracy and the F1 scores
depend only on the (true, predicted) counts, so resampling the ``n_c`` texts of
class ``c`` is one multinomial draw of ``n_c`` over that class's row of the
confusion matrix: exact, and ``O(resamples x classes^2)`` whatever the test
size. A paired resample draws, per class, over the joint (prediction of A,
prediction of B) cells, so both models see the same resampled texts.
Intervals are percentile intervals.

Two models on the same texts are compared with McNemar's exact test on the
texts that exactly one of them gets right (a two-sided binomial test with p=0.5,
``scipy.stats.binomtest``) and with the paired bootstrap interval of their
macro-F1 difference.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy.stats import binomtest

METRICS = ("accuracy", "macro_f1", "weighted_f1")
METHOD = "stratified bootstrap (resampled within each true class), percentile interval"


def scores_from_confusion(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, macro-F1 and weighted-F1 of confusion matrices (rows: true class), over leading axes.

    Same definitions as :func:`multitype.evaluate.classification_metrics`: every
    class counts in the macro average, a class with neither examples nor
    predictions has F1 0.
    """
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support, predicted = cm.sum(axis=-1), cm.sum(axis=-2)
    n = support.sum(axis=-1)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"accuracy": tp.sum(axis=-1) / n, "macro_f1": f1.mean(axis=-1),
            "weighted_f1": (f1 * support).sum(axis=-1) / n}


def _resample_rows(counts: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``counts`` (classes x cells) -> (resamples x classes x cells): each row redrawn with its own total."""
    draws = np.zeros((resamples, *counts.shape), dtype=np.int64)
    for c, row in enumerate(counts):
        total = int(row.sum())
        if total:
            draws[:, c] = rng.multinomial(total, row / total, size=resamples)
    return draws


def _interval(values: np.ndarray, confidence: float) -> list[float]:
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return [float(low), float(high)]


def bootstrap_intervals(confusion: Sequence[Sequence[int]] | np.ndarray, resamples: int = 1000,
                        confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Stratified bootstrap intervals of accuracy, macro-F1 and weighted-F1 from a confusion matrix.

    Parameters
    ----------
    confusion : array of shape (classes, classes)
        Counts, rows the true class (as in the metrics JSON).
    resamples : int, default=1000
    confidence : float, default=0.95
    seed : int, default=0
        Same seed, same intervals.

    Returns
    -------
    dict
        ``{"accuracy": [low, high], "macro_f1": [...], "weighted_f1": [...]}`` plus
        ``confidence``, ``resamples``, ``seed`` and ``method``.
    """
    counts = np.asarray(confusion, dtype=np.int64)
    rng = np.random.default_rng(seed)
    scores = scores_from_confusion(_resample_rows(counts, resamples, rng))
    return {"confidence": confidence, "resamples": resamples, "seed": seed, "method": METHOD,
            **{name: _interval(scores[name], confidence) for name in METRICS}}


def mcnemar_exact(y_true: Sequence[int], pred_a: Sequence[int], pred_b: Sequence[int]) -> dict[str, Any]:
    """McNemar's exact test: is one model right more often than the other on the same texts?

    Returns
    -------
    dict
        ``a_only`` (texts only A gets right), ``b_only``, ``p_value`` (two-sided
        binomial test of ``a_only`` among ``a_only + b_only`` at 0.5; 1.0 when
        no text separates them).
    """
    y, a, b = (np.asarray(v) for v in (y_true, pred_a, pred_b))
    a_only = int(np.sum((a == y) & (b != y)))
    b_only = int(np.sum((a != y) & (b == y)))
    p = binomtest(a_only, a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0
    return {"a_only": a_only, "b_only": b_only, "p_value": float(p)}


def paired_bootstrap(y_true: Sequence[int], pred_a: Sequence[int], pred_b: Sequence[int], num_classes: int,
                     resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
                     metric: str = "macro_f1") -> dict[str, Any]:
    """Interval of ``metric(A) - metric(B)`` with both models scored on the same resampled texts."""
    y, a, b = (np.asarray(v, dtype=np.int64) for v in (y_true, pred_a, pred_b))
    k = num_classes
    joint = np.zeros((k, k * k), dtype=np.int64)  # per true class: counts of (pred A, pred B)
    np.add.at(joint, (y, a * k + b), 1)
    draws = _resample_rows(joint, resamples, np.random.default_rng(seed)).reshape(resamples, k, k, k)
    cm_a, cm_b = draws.sum(axis=3), draws.sum(axis=2)
    differences = scores_from_confusion(cm_a)[metric] - scores_from_confusion(cm_b)[metric]
    observed = joint.reshape(k, k, k)
    difference = float(scores_from_confusion(observed.sum(axis=2))[metric]
                       - scores_from_confusion(observed.sum(axis=1))[metric])
    return {"metric": metric, "difference": difference, "interval": _interval(differences, confidence),
            "confidence": confidence, "resamples": resamples, "seed": seed}


def compare(y_true: Sequence[int], best: Sequence[int], other: Sequence[int], num_classes: int, alpha: float = 0.05,
            resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The best model against another on the same texts.

    ``significant`` only when both tests agree at level ``alpha``: McNemar's
    p-value is below it and the ``1 - alpha`` paired interval of the macro-F1
    difference excludes 0.
    """
    y, a, b = (np.asarray(v) for v in (y_true, best, other))
    test = mcnemar_exact(y, a, b)
    boot = paired_bootstrap(y, a, b, num_classes, resamples=resamples, confidence=1 - alpha, seed=seed)
    low, high = boot["interval"]
    return {"num_samples": int(len(y)), "differ": int(np.sum(a != b)), "best_only_correct": test["a_only"],
            "other_only_correct": test["b_only"], "mcnemar_p": test["p_value"],
            "macro_f1_difference": boot["difference"], "difference_interval": boot["interval"],
            "alpha": alpha, "significant": bool(test["p_value"] < alpha and (low > 0 or high < 0))}
