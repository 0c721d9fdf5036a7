"""Which differences between models are real: an interval on every test score, paired tests against the best.

:func:`analyse` takes the metrics records the report reads and returns, per
model, its bootstrap intervals (the stored ones, or computed here from the
confusion matrix for a schema-1 file or other ``report:`` settings) and its
comparison with the best model by macro-F1 (:func:`multitype.stats.compare`),
or why there is none: two models are compared only on the same test texts
(same ``texts_sha256``), so both need the per-text predictions of schema 2.
The verdict names a single best model only when every other one is
significantly worse; otherwise it lists the models statistically tied with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from multitype.config import ReportConfig
from multitype.stats import bootstrap_intervals, compare


@dataclass
class Analysis:
    best: str
    intervals: dict[str, dict[str, Any] | None]          # model -> intervals (None: none could be computed)
    notes: dict[str, str]                                 # model -> how its intervals were obtained, if not stored
    comparisons: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> stats.compare(...)
    not_compared: dict[str, str] = field(default_factory=dict)            # model -> why not
    tied: list[str] = field(default_factory=list)         # models not significantly worse than the best
    settings: ReportConfig = field(default_factory=ReportConfig)

    @property
    def single_best(self) -> bool:
        """Every other model was compared and is significantly worse."""
        return not self.tied and not self.not_compared


def schema_version(record: dict[str, Any]) -> int:
    """The record's ``schema_version`` (1 for files written before it existed)."""
    return int(record.get("schema_version", 1))


def predictions(record: dict[str, Any]) -> dict[str, Any] | None:
    """The stored per-text test predictions, or None (schema 1, or a record without them)."""
    block = record.get("predictions")
    return block if isinstance(block, dict) and block.get("y_pred") is not None else None


def _intervals(record: dict[str, Any], settings: ReportConfig, seed: int) -> tuple[dict[str, Any] | None, str | None]:
    stored = record.get("intervals")
    if stored and stored.get("confidence") == settings.confidence and stored.get("resamples") == settings.resamples:
        return stored, None
    matrix = (record.get("confusion_matrix") or {}).get("matrix")
    if not matrix:
        return None, "no confusion matrix in its metrics file"
    why = ("its metrics file predates intervals (schema 1)" if schema_version(record) < 2 and not stored
           else "the report's confidence or resamples differ from the stored ones")
    return (bootstrap_intervals(matrix, settings.resamples, settings.confidence, seed),
            f"computed at report time from the confusion matrix: {why}")


def _why_not(best: dict[str, Any], other: dict[str, Any]) -> str | None:
    for record in (best, other):
        if predictions(record) is None:
            return (f"no per-text predictions in the metrics file of `{record['model']}` (schema "
                    f"{schema_version(record)}; retrain it to compare)")
    if predictions(best)["texts_sha256"] != predictions(other)["texts_sha256"]:
        return "scored on other test texts than the best model"
    if best.get("labels") != other.get("labels"):
        return "other class labels than the best model"
    return None


def analyse(records: Sequence[dict[str, Any]], settings: ReportConfig, seed: int) -> Analysis:
    """Intervals for every record and paired comparisons of each against the best by macro-F1.

    Parameters
    ----------
    records : metrics records (``*_metrics.json``), at least one
    settings : the ``report:`` section of ``project.yaml``
    seed : the project's seed (same seed, same intervals)
    """
    intervals, notes = {}, {}
    for record in records:
        intervals[record["model"]], note = _intervals(record, settings, seed)
        if note:
            notes[record["model"]] = note
    best = max(records, key=lambda r: r["macro_f1"])
    result = Analysis(best=best["model"], intervals=intervals, notes=notes, settings=settings)
    for record in records:
        if record is best:
            continue
        why = _why_not(best, record)
        if why:
            result.not_compared[record["model"]] = why
            continue
        ours, theirs = predictions(best), predictions(record)
        result.comparisons[record["model"]] = row = compare(
            ours["y_true"], ours["y_pred"], theirs["y_pred"], len(best["labels"]), alpha=settings.alpha,
            resamples=settings.resamples, seed=seed)
        if not row["significant"]:
            result.tied.append(record["model"])
    return result


def tie_reason(row: dict[str, Any]) -> str:
    """``tied: 2 of 177 test texts differ (McNemar p = 0.50, macro-F1 difference 0.008 [-0.004, 0.021])``."""
    low, high = row["difference_interval"]
    return (f"{row['differ']} of {row['num_samples']} test texts differ (McNemar p = {p_value(row['mcnemar_p'])}, "
            f"macro-F1 difference {row['macro_f1_difference']:.3f} [{low:.3f}, {high:.3f}])")


def p_value(p: float) -> str:
    """``1.00``, ``0.070``, ``<0.001``."""
    return "<0.001" if p < 0.001 else f"{p:.2f}" if p >= 0.1 else f"{p:.3f}"
