"""Metrics files -> summary CSVs: reading ``*_metrics.json`` and rebuilding the summaries.

Baselines and transformers write the same metrics schema (DESIGN.md section 4)
into their own folder; each folder's summary CSV is rebuilt from the metrics
files present, one row per model, so it never disagrees with them.
"""

from __future__ import annotations

import io
import posixpath
from typing import Any

import pandas as pd

from multitype import layout
from multitype.evaluate import SUMMARY_COLUMNS, summary_row
from multitype.storage import Storage

METRICS_SUFFIX = "_metrics.json"
# kind -> (folder of the metrics files, summary CSV key)
KINDS: dict[str, tuple[str, str]] = {
    "baseline": (posixpath.dirname(layout.baseline_metrics("x")), layout.BASELINE_SUMMARY),
    "transformer": (posixpath.dirname(layout.transformer_metrics("x")), layout.TRANSFORMER_SUMMARY),
}


def load_records(storage: Storage, kind: str) -> dict[str, dict[str, Any]]:
    """Every ``*_metrics.json`` of ``kind`` (``baseline`` or ``transformer``), by file stem, sorted.

    Tuning trials (records with ``tuning``) scored on val only are left out: they are not test results. The
    study's best trial, evaluated on test at the end of ``multitype tune``, is in.
    """
    folder, _ = KINDS[kind]
    records = {}
    for name in storage.listdir(folder):
        if name.endswith(METRICS_SUFFIX) and not name.startswith("."):
            record = storage.read_json(f"{folder}/{name}")
            if record.get("tuning") and "test" not in record.get("splits", {}):
                continue
            records[name[: -len(METRICS_SUFFIX)]] = record
    return records


def metrics_keys(storage: Storage, kind: str) -> list[str]:
    """The keys of the metrics files that :func:`load_records` reads."""
    folder, _ = KINDS[kind]
    return [f"{folder}/{name}" for name in storage.listdir(folder)
            if name.endswith(METRICS_SUFFIX) and not name.startswith(".")]


def write_summary(storage: Storage, kind: str, records: dict[str, dict[str, Any]] | None = None) -> str | None:
    """Rebuild the summary CSV of ``kind`` from its metrics files; ``None`` when there are none.

    Returns
    -------
    str or None
        The key of the CSV written.
    """
    records = load_records(storage, kind) if records is None else records
    if not records:
        return None
    _, key = KINDS[kind]
    frame = pd.DataFrame([summary_row(records[name]) for name in sorted(records)], columns=SUMMARY_COLUMNS)
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    storage.write_text(key, buf.getvalue())
    return key
