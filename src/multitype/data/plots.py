"""Data figures: class balance per split and text lengths per class.

Each function builds and returns a matplotlib figure; the caller saves it with
:func:`multitype.figures.save_figure`, so figures are made before anything is
written and a plotting failure leaves the root as it was.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from multitype.figures import plt


def class_balance(counts: Mapping[str, Mapping[str, int]], labels: Sequence[str]) -> "plt.Figure":
    """Grouped bars: examples per class (x) for each split (bars).

    Parameters
    ----------
    counts : mapping
        Split name -> class name -> number of examples.
    labels : sequence of str
        Class names, in label-id order.
    """
    splits = [name for name in counts if sum(counts[name].values()) > 0]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(labels) + 2), 4.2))
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(splits))
    for k, split in enumerate(splits):
        values = [counts[split].get(label, 0) for label in labels]
        bars = ax.bar(x + (k - (len(splits) - 1) / 2) * width, values, width,
                      label=f"{split} ({sum(values)})")
        ax.bar_label(bars, fontsize=7, padding=1)
    ax.set_xticks(x, labels, rotation=30 if len(labels) > 6 else 0, ha="right" if len(labels) > 6 else "center")
    ax.set_ylabel("examples")
    ax.set_title("Class balance per split")
    ax.legend(frameon=False)
    ax.margins(y=0.12)
    return fig


def text_lengths(lengths: Mapping[str, Sequence[int]]) -> "plt.Figure":
    """Histograms (outlines, shared bins) of words per text, one per class.

    Parameters
    ----------
    lengths : mapping
        Class name -> word counts of its texts (all splits).
    """
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    every = np.concatenate([np.asarray(v, dtype=float) for v in lengths.values()] or [np.zeros(1)])
    top = max(1.0, float(np.percentile(every, 99))) if every.size else 1.0
    bins = np.linspace(0, top, 40)
    for label, values in lengths.items():
        values = np.asarray(values, dtype=float)
        median = float(np.median(values)) if values.size else 0.0
        ax.hist(np.clip(values, 0, top), bins=bins, histtype="step", linewidth=1.6,
                label=f"{label} (median {median:.0f})")
    ax.set_xlabel("words per text (longest 1% clipped to the edge)")
    ax.set_ylabel("texts")
    ax.set_title("Text length by class")
    ax.legend(frameon=False, fontsize=8)
    return fig
