"""What the models get wrong: misclassified test texts per model, confused class pairs, texts all miss.

Everything comes from the metrics records: the per-text ``predictions`` (schema
2) hold the predicted ids, probabilities and the first 200 characters of every
misclassified text, so ``results/errors/<model>.csv`` is rebuilt from them
alone; the confused pairs come from the confusion matrices (any schema).
"""

from __future__ import annotations

import io
from collections import Counter
from typing import Any, Sequence

import pandas as pd

from multitype import layout
from multitype.compare import predictions
from multitype.storage import Storage

COLUMNS = ["index", "text", "true_label", "predicted_label", "probability"]


def misclassified(record: dict[str, Any]) -> pd.DataFrame:
    """One row per misclassified test text (``index`` = its row in the test split).

    ``probability`` is the model's probability of the label it predicted (empty
    for a model without probabilities).
    """
    block = predictions(record)
    labels = record["labels"]
    rows = []
    if block is not None:
        probs = block.get("probabilities")
        for i, (true, pred) in enumerate(zip(block["y_true"], block["y_pred"])):
            if true != pred:
                rows.append([i, block["misclassified_texts"].get(str(i), ""), labels[true], labels[pred],
                             None if probs is None else round(float(probs[i][pred]), 4)])
    return pd.DataFrame(rows, columns=COLUMNS)


def write_error_csvs(storage: Storage, records: Sequence[dict[str, Any]]) -> dict[str, str]:
    """``results/errors/<model>.csv`` for every record with predictions; CSVs of other models are removed.

    Returns
    -------
    dict
        Model name -> the key of its CSV.
    """
    written = {}
    for record in records:
        if predictions(record) is None:
            continue
        buf = io.StringIO()
        misclassified(record).to_csv(buf, index=False)
        key = layout.errors_csv(record["model"])
        storage.write_text(key, buf.getvalue())
        written[record["model"]] = key
    stale = [f"{layout.ERRORS}/{name}" for name in storage.listdir(layout.ERRORS)
             if name.endswith(".csv") and f"{layout.ERRORS}/{name}" not in written.values()]
    if stale:
        storage.rm_files(stale)
    return written


def confused_pairs(records: Sequence[dict[str, Any]], top: int = 5) -> list[dict[str, Any]]:
    """The ``top`` (true, predicted) pairs with most errors summed over the models, with each model's count."""
    totals: Counter[tuple[str, str]] = Counter()
    per_model: dict[tuple[str, str], dict[str, int]] = {}
    for record in records:
        labels = record["confusion_matrix"]["labels"]
        for i, row in enumerate(record["confusion_matrix"]["matrix"]):
            for j, count in enumerate(row):
                if i != j and count:
                    pair = (labels[i], labels[j])
                    totals[pair] += count
                    per_model.setdefault(pair, {})[record["model"]] = count
    return [{"true": t, "predicted": p, "total": n, "models": per_model[(t, p)]}
            for (t, p), n in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]


def missed_by_all(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Test texts that every model with predictions gets wrong (at least two models, same test texts).

    Returns an empty list when fewer than two records have predictions on the same texts.
    """
    usable = [r for r in records if predictions(r) is not None]
    if len(usable) < 2 or len({(predictions(r)["texts_sha256"], tuple(r["labels"])) for r in usable}) != 1:
        return []
    first = predictions(usable[0])
    wrong = set(range(first["num_samples"]))
    for record in usable:
        block = predictions(record)
        wrong &= {i for i, (t, p) in enumerate(zip(block["y_true"], block["y_pred"])) if t != p}
    labels = usable[0]["labels"]
    return [{"index": i, "text": first["misclassified_texts"].get(str(i), ""), "true": labels[first["y_true"][i]],
             "predicted": {r["model"]: labels[predictions(r)["y_pred"][i]] for r in usable}}
            for i in sorted(wrong)]
