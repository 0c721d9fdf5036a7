"""Reading the processed splits and label map that ``prepare`` wrote.

Both go through :func:`multitype.data.publish.read_current`, so a ``prepare``
that died midway gives the complete old set or the complete new one.
"""

from __future__ import annotations

import io
import json

import pandas as pd

from multitype import layout
from multitype.data.publish import read_current
from multitype.errors import DataError
from multitype.storage import Storage


def load_labels(storage: Storage) -> list[str]:
    """Class names ordered by id, from ``data/processed/labels.json``."""
    data = read_current(storage, layout.LABELS)
    if data is None:
        raise DataError(f"{storage.url(layout.LABELS)} not found; run 'multitype prepare' first")
    try:
        mapping = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DataError(f"{storage.url(layout.LABELS)} is not valid JSON; rerun 'multitype prepare'") from None
    if not isinstance(mapping, dict):
        raise DataError(f"{storage.url(layout.LABELS)} is not a mapping of class names to ids; "
                        "rerun 'multitype prepare'")
    return [name for name, _ in sorted(mapping.items(), key=lambda kv: kv[1])]


def load_split(storage: Storage, split: str, label_names: list[str]) -> tuple[list[str], list[int]]:
    """Texts and class ids of one processed split (``train``, ``val`` or ``test``)."""
    key = layout.processed_split(split, len(label_names))
    data = read_current(storage, key)
    if data is None:
        raise DataError(f"{storage.url(key)} not found; run 'multitype prepare' first")
    frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    missing = {"text", "label"} - set(frame.columns)
    if missing:
        raise DataError(f"{storage.url(key)}: missing column(s) {sorted(missing)}; rerun 'multitype prepare'")
    ids = {name: i for i, name in enumerate(label_names)}
    unknown = sorted(set(frame["label"]) - set(ids))
    if unknown:
        raise DataError(f"{storage.url(key)}: label(s) {unknown} not in labels.json; rerun 'multitype prepare'")
    return frame["text"].tolist(), [ids[label] for label in frame["label"]]
