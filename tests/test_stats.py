"""Intervals, paired tests and calibration against cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from multitype.calibration import reliability
from multitype.config import ReportConfig
from multitype.compare import analyse, tie_reason
from multitype.evaluate import classification_metrics, metrics_record, predictions_block
from multitype.stats import bootstrap_intervals, compare, mcnemar_exact, paired_bootstrap, scores_from_confusion

# class 0: 10 texts, all right; class 1: 10 texts, 5 right. A stratified resample keeps 10 + 10 texts, so
# accuracy = (10 + X) / 20 with X ~ Binomial(10, 0.5): P(X <= 1) = 11/1024 < 2.5% <= P(X <= 2) = 56/1024 and
# P(X <= 7) = 968/1024 < 97.5% <= P(X <= 8) = 1013/1024, so the 95% interval is [12/20, 18/20] = [0.6, 0.9].
Y_TRUE = [0] * 10 + [1] * 10
HALF_WRONG = [0] * 10 + [1, 0] * 5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accuracy_interval_matches_the_binomial_quantiles(seed: int) -> None:
    confusion = classification_metrics(Y_TRUE, HALF_WRONG, ["a", "b"])["confusion_matrix"]["matrix"]
    assert confusion == [[10, 0], [5, 5]]
    intervals = bootstrap_intervals(confusion, resamples=2000, confidence=0.95, seed=seed)
    assert intervals["accuracy"] == pytest.approx([0.6, 0.9])
    assert intervals["resamples"] == 2000 and intervals["seed"] == seed
    assert bootstrap_intervals(confusion, resamples=2000, seed=seed) == intervals  # seeded: same again


def test_perfect_predictions_have_a_zero_width_interval() -> None:
    intervals = bootstrap_intervals([[30, 0, 0], [0, 20, 0], [0, 0, 5]], resamples=1000)
    assert all(intervals[m] == [1.0, 1.0] for m in ("accuracy", "macro_f1", "weighted_f1"))


def test_scores_from_confusion_equal_the_metrics_of_the_json() -> None:
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    p[y == 3] = 3  # one class always right, one never predicted
    p[p == 2] = 1
    metrics = classification_metrics(y, p, list("abcd"))
    scores = scores_from_confusion(np.asarray(metrics["confusion_matrix"]["matrix"]))
    for name in ("accuracy", "macro_f1", "weighted_f1"):
        assert scores[name] == pytest.approx(metrics[name])


def test_multinomial_draws_equal_resampling_the_texts() -> None:
    """The shortcut (one multinomial per class row) gives the intervals of resampling text indices."""
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], [60, 40, 20])
    p = np.where(rng.random(len(y)) < 0.8, y, rng.integers(0, 3, len(y)))
    by_class = [np.flatnonzero(y == c) for c in range(3)]
    draws = np.concatenate([rng.choice(idx, size=(20000, len(idx))) for idx in by_class], axis=1)
    confusion = np.zeros((20000, 3, 3))
    np.add.at(confusion, (np.arange(20000)[:, None], y[draws], p[draws]), 1)
    texts = {m: np.quantile(v, [0.025, 0.975]) for m, v in scores_from_confusion(confusion).items()}
    ours = bootstrap_intervals(classification_metrics(y, p, list("abc"))["confusion_matrix"]["matrix"],
                               resamples=20000, seed=3)
    for name in ("accuracy", "macro_f1", "weighted_f1"):
        assert ours[name] == pytest.approx(texts[name], abs=0.012)


def test_mcnemar_exact_p_value_by_hand() -> None:
    # 8 texts separate the models, 7 of them for A: p = 2 * P(X <= 1 | n=8, 1/2) = 2 * 9 / 256
    result = mcnemar_exact([0] * 10, [0] * 7 + [1] + [0, 1], [1] * 7 + [0] + [0, 1])
    assert result == {"a_only": 7, "b_only": 1, "p_value": pytest.approx(18 / 256)}
    assert mcnemar_exact([0, 1], [0, 0], [0, 0])["p_value"] == 1.0  # nothing separates them


def test_paired_bootstrap_of_a_known_difference() -> None:
    # A is right everywhere, B is HALF_WRONG: the difference in accuracy is X / 20, X ~ Binomial(10, 1/2)
    boot = paired_bootstrap(Y_TRUE, Y_TRUE, HALF_WRONG, 2, resamples=2000, seed=0, metric="accuracy")
    assert boot["difference"] == pytest.approx(0.25) and boot["interval"] == pytest.approx([0.1, 0.4])
    same = paired_bootstrap(Y_TRUE, HALF_WRONG, HALF_WRONG, 2, resamples=1000)
    assert same["difference"] == 0 and same["interval"] == [0.0, 0.0]


def test_compare_needs_both_tests_to_reject() -> None:
    y = [0] * 20 + [1] * 20
    best = list(y)
    worse = [0] * 20 + [0] * 10 + [1] * 10  # 10 texts only the best gets right: p = 2 / 2**10
    row = compare(y, best, worse, 2, alpha=0.05, resamples=1000)
    assert row["mcnemar_p"] == pytest.approx(2 / 1024) and row["significant"]
    assert row["differ"] == 10 and row["best_only_correct"] == 10 and row["other_only_correct"] == 0
    # 7 vs 1 texts: p = 0.0703 > 0.05 although the bootstrap interval excludes 0: tied at 0.05, worse at 0.1
    best[0] = 1
    close = [0] * 20 + [0] * 7 + [1] * 13
    tied = compare(y, best, close, 2, alpha=0.05)
    assert (tied["best_only_correct"], tied["other_only_correct"]) == (7, 1)
    assert tied["mcnemar_p"] == pytest.approx(18 / 256) and tied["difference_interval"][0] > 0
    assert tied["significant"] is False
    assert compare(y, best, close, 2, alpha=0.1)["significant"] is True


def _record(model: str, y_true: list[int], y_pred: list[int], probabilities=None) -> dict:
    labels = ["a", "b"]
    test = classification_metrics(y_true, y_pred, labels)
    texts = [f"text {i}" for i in range(len(y_true))]
    return metrics_record(model, "baseline", labels, {"test": test}, "r", 1.0, 1.0,
                          predictions=predictions_block(texts, y_true, y_pred, probabilities))


def test_analyse_names_a_tie_with_its_reason() -> None:
    y = [0] * 20 + [1] * 20
    best, other = list(y), list(y)
    other[0], other[25] = 1, 0  # 2 of 40 texts differ
    analysis = analyse([_record("x", y, best), _record("y", y, other)], ReportConfig(), seed=0)
    assert analysis.best == "x" and analysis.tied == ["y"] and not analysis.single_best
    assert tie_reason(analysis.comparisons["y"]).startswith("2 of 40 test texts differ (McNemar p = 0.50")


def test_analyse_without_predictions_computes_intervals_and_compares_nothing() -> None:
    y = [0] * 20 + [1] * 20
    old = _record("old", y, y)
    for key in ("schema_version", "predictions", "intervals"):
        old.pop(key, None)
    analysis = analyse([_record("new", y, [1] + y[1:]), old], ReportConfig(), seed=0)
    assert analysis.best == "old" and analysis.intervals["old"]["accuracy"] == [1.0, 1.0]
    assert "schema 1" in analysis.notes["old"] and "schema 1" in analysis.not_compared["new"]
    assert not analysis.single_best and not analysis.tied


def test_ece_by_hand() -> None:
    # two texts at confidence 0.9 (one right), two at 0.6 (both right): ECE = 0.5 * 0.4 + 0.5 * 0.4
    bins = reliability([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]], [0, 1, 0, 1])
    assert bins["ece"] == pytest.approx(0.4)
    assert bins["count"][9] == 2 and bins["count"][6] == 2 and sum(bins["count"]) == 4
    assert bins["accuracy"][9] == 0.5 and bins["confidence"][6] == pytest.approx(0.6) and bins["accuracy"][0] is None
    assert reliability([[1.0, 0.0]], [0])["count"][9] == 1  # confidence 1 falls into the last bin
    assert reliability([[1.0, 0.0], [0.0, 1.0]], [0, 1])["ece"] == 0.0


def test_models_on_other_texts_or_labels_are_not_compared() -> None:
    y = [0] * 20 + [1] * 20
    other_texts = _record("elsewhere", y, y)
    other_texts["predictions"]["texts_sha256"] = "0" * 64
    relabelled = _record("relabelled", y, y)
    relabelled["labels"] = ["b", "a"]
    analysis = analyse([_record("x", y, y), other_texts, relabelled], ReportConfig(), seed=0)
    assert analysis.not_compared == {"elsewhere": "scored on other test texts than the best model",
                                     "relabelled": "other class labels than the best model"}
    assert not analysis.single_best and not analysis.comparisons
