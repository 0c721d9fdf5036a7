"""Reading the processed splits and label map that ``prepare`` wrote."""

from __future__ import annotations

import io

import pandas as pd

from multitype import layout
from multitype.errors import DataError
from multitype.storage import Storage


def load_labels(storage: Storage) -> list[str]:
    """Class names ordered by id, from ``data/processed/labels.json``."""
    if not storage.exists(layout.LABELS):
        raise DataError(f"{storage.url(layout.LABELS)} not found; run 'multitype prepare' first")
    mapping = storage.read_json(layout.LABELS)
    return [name for name, _ in sorted(mapping.items(), key=lambda kv: kv[1])]


def load_split(storage: Storage, split: str, label_names: list[str]) -> tuple[list[str], list[int]]:
    """Texts and class ids of one processed split (``train``, ``val`` or ``test``)."""
    key = layout.processed_split(split, len(label_names))
    if not storage.exists(key):
        raise DataError(f"{storage.url(key)} not found; run 'multitype prepare' first")
    frame = pd.read_csv(io.BytesIO(storage.read_bytes(key)), dtype=str, keep_default_na=False)
    missing = {"text", "label"} - set(frame.columns)
    if missing:
        raise DataError(f"{storage.url(key)}: missing column(s) {sorted(missing)}; rerun 'multitype prepare'")
    ids = {name: i for i, name in enumerate(label_names)}
    unknown = sorted(set(frame["label"]) - set(ids))
    if unknown:
        raise DataError(f"{storage.url(key)}: label(s) {unknown} not in labels.json; rerun 'multitype prepare'")
    return frame["text"].tolist(), [ids[label] for label in frame["label"]]
