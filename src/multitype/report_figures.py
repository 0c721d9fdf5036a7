"""The report's training and calibration figures: learning curves per transformer, their overlay, reliability.

Learning curves are drawn from the ``history`` of a transformer's metrics JSON
(one entry per epoch: ``train_loss``, ``val_loss``, ``val_<metric>``); the
reliability diagram from :func:`multitype.calibration.reliability`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from matplotlib.ticker import MaxNLocator

from multitype.figures import plt


def history(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-epoch entries of a transformer's run (empty for a baseline or a run without them)."""
    return [e for e in record.get("history") or [] if isinstance(e, dict) and "epoch" in e]


def val_metric(record: dict[str, Any]) -> str:
    """The validation metric the run selected its best epoch by (``val_macro_f1`` by default)."""
    return f"val_{(record.get('params') or {}).get('metric', 'macro_f1')}"


def learning_curve_figure(record: dict[str, Any]) -> "plt.Figure":
    """Train and val loss (left axis) and the val metric (right axis) per epoch; the best epoch marked."""
    entries = history(record)
    epochs = [e["epoch"] for e in entries]
    metric = val_metric(record)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(epochs, [e.get("train_loss") for e in entries], "o-", label="train loss")
    if any("val_loss" in e for e in entries):
        ax.plot(epochs, [e.get("val_loss", np.nan) for e in entries], "s--", label="val loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    right = ax.twinx()
    if any(metric in e for e in entries):
        right.plot(epochs, [e.get(metric, np.nan) for e in entries], "^-", color="tab:green", label=metric)
        right.set_ylabel(metric.replace("_", " "))
    if record.get("best_epoch"):
        ax.axvline(record["best_epoch"], color="grey", linestyle=":", label=f"best epoch ({record['best_epoch']})")
    handles = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], loc="center right", fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(f"{record['model']}: learning curve")
    return fig


def learning_overlay_figure(records: Sequence[dict[str, Any]]) -> "plt.Figure":
    """Every transformer's train loss and val metric per epoch on two shared panels."""
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for record in records:
        entries = history(record)
        epochs = [e["epoch"] for e in entries]
        loss_ax.plot(epochs, [e.get("train_loss") for e in entries], "o-", label=record["model"])
        metric_ax.plot(epochs, [e.get(val_metric(record), np.nan) for e in entries], "o-", label=record["model"])
    names = sorted({val_metric(r) for r in records})
    metric = names[0].replace("_", " ") if len(names) == 1 else "validation metric"
    loss_ax.set(xlabel="epoch", ylabel="train loss", title="train loss")
    metric_ax.set(xlabel="epoch", ylabel=metric, title=f"{metric} (picks the best epoch)")
    for ax in (loss_ax, metric_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def reliability_figure(model: str, bins: dict[str, Any]) -> "plt.Figure":
    """Accuracy against mean confidence per bin (the diagonal is perfect calibration), texts per bin below."""
    edges = np.asarray(bins["edges"])
    centers, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    accuracy = [np.nan if a is None else a for a in bins["accuracy"]]
    fig, (ax, count_ax) = plt.subplots(2, 1, figsize=(5.5, 6), height_ratios=[3, 1], sharex=True)
    ax.bar(centers, accuracy, width=width * 0.9, edgecolor="black", alpha=0.8, label="accuracy in bin")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), ylabel="accuracy", title=f"{model}: ECE {bins['ece']:.3f}")
    ax.legend(loc="upper left", fontsize=8)
    count_ax.bar(centers, bins["count"], width=width * 0.9, color="tab:grey")
    count_ax.set(xlabel="confidence (probability of the predicted class)", ylabel="texts")
    count_ax.set_yscale("symlog")
    return fig
