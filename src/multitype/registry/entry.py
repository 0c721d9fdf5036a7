"""What a registry version records about a model folder, and where each fact comes from.

- ``sha256``: :func:`multitype.manifest.folder_digest` of the folder (every
  file's path and bytes; ``serve`` prints its first 12 hex digits as the
  model's version), plus each file's own sha256 for the run lookup below.
- The run: the manifest ``runs/<run_id>/manifest.json`` of the run id in
  ``model.json`` (baselines write it), else the newest manifest under
  ``runs/`` whose outputs record this folder's weights file with this very
  sha256 (transformers), so a folder retrained since is never credited with
  an older run's numbers.
- From that manifest: the code version (``code``), and the data fingerprint:
  one sha256 over the processed splits' names and sha256s as the run read them.
- Metrics: the run's ``results/<kind>/<model>_metrics.json`` (listed in the
  manifest's outputs), kept only when it still carries that run id: test
  accuracy, macro-F1, weighted-F1 and, where the file has them (schema 2), the
  bootstrap intervals.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multitype import layout
from multitype.manifest import folder_digest, sha256_file
from multitype.storage import COMPLETE_MARKER, Storage

WEIGHT_FILES = ("model.safetensors", "model.skops", "pytorch_model.bin")
MAX_MANIFESTS = 500          # newest run manifests searched for a model without a run id
_BATCH = 16                  # manifests fetched at once
METRIC_FIELDS = ("split", "accuracy", "macro_f1", "weighted_f1")
_SPLIT_CSV = re.compile(r"^data/processed/(train|val|test)_\d+class\.csv$")


@dataclass
class ModelFacts:
    """What :func:`model_facts` found about one model folder (None: not found)."""

    kind: str
    sha256: str
    name: str | None
    files: dict[str, str]
    run_id: str | None = None
    code: dict[str, Any] | None = None
    data_fingerprint: str | None = None
    data_files: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    metrics_file: str | None = None
    warnings: list[str] = field(default_factory=list)


def data_fingerprint(files: dict[str, str]) -> str:
    """One sha256 over ``key sha256`` lines of the processed splits, sorted by key."""
    text = "".join(f"{key} {digest}\n" for key, digest in sorted(files.items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_facts(root: Storage, folder: Path) -> ModelFacts:
    """Hash the local model ``folder`` and find its run, data, code version and test metrics under ``root``.

    Raises
    ------
    ModelError
        ``folder`` is not a model folder (:func:`multitype.predictor.model_kind`).
    """
    import json

    from multitype.predictor import MODEL_JSON, model_kind

    kind = model_kind(folder)
    card: dict[str, Any] = {}
    if (folder / MODEL_JSON).is_file():
        loaded = json.loads((folder / MODEL_JSON).read_text(encoding="utf-8"))
        card = loaded if isinstance(loaded, dict) else {}
    files = {p.relative_to(folder).as_posix(): sha256_file(p)
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != COMPLETE_MARKER}
    facts = ModelFacts(kind=kind, sha256=folder_digest(folder), files=files,
                       name=card.get("model") or card.get("model_name"))
    found = _run_manifest(root, files, card.get("run_id"))
    if found is None:
        facts.warnings.append(f"no run manifest under {root.url(layout.RUNS)} records these model files: "
                              "registered without run id, code version, data fingerprint or metrics")
        return facts
    manifest, folder_key = found
    facts.run_id = manifest.get("run_id")
    facts.code = manifest.get("code") if isinstance(manifest.get("code"), dict) else None
    inputs = manifest.get("inputs") if isinstance(manifest.get("inputs"), dict) else {}
    facts.data_files = {k: str(v) for k, v in inputs.items() if _SPLIT_CSV.match(k)}
    facts.data_fingerprint = data_fingerprint(facts.data_files) if facts.data_files else None
    facts.metrics_file, facts.metrics = _metrics(root, manifest, folder_key, facts)
    return facts


def _run_manifest(root: Storage, files: dict[str, str], run_id: Any) -> tuple[dict[str, Any], str | None] | None:
    """(manifest, the model's folder key in its outputs) of the run that made these files, or None."""
    import json

    weights = next((name for name in WEIGHT_FILES if name in files), None)
    candidates: list[str] = []
    if isinstance(run_id, str) and run_id and root.exists(layout.manifest(run_id)):
        candidates.append(run_id)
    names = [n for n in root.listdir(layout.RUNS) if n not in candidates and n not in ("tune", "mlflow")]
    candidates += sorted(names, reverse=True)[:MAX_MANIFESTS]  # run ids start with their UTC time: newest first
    for start in range(0, len(candidates), _BATCH):
        batch = [c for c in candidates[start:start + _BATCH] if root.exists(layout.manifest(c))]
        texts = root.read_many([layout.manifest(c) for c in batch])  # concurrent GETs on S3
        for candidate in batch:
            try:
                manifest = json.loads(texts[layout.manifest(candidate)])
            except ValueError:
                continue  # a damaged manifest is no evidence either way
            outputs = manifest.get("outputs") if isinstance(manifest, dict) else None
            if not isinstance(outputs, dict):
                continue
            folder_key = _folder_in(outputs, weights, files.get(weights or ""))
            if folder_key is not None or (candidate == run_id and weights is None):
                return manifest, folder_key
    return None


def _folder_in(outputs: dict[str, Any], weights: str | None, digest: str | None) -> str | None:
    """The folder key whose ``<folder>/<weights>`` output has ``digest``."""
    if weights is None or digest is None:
        return None
    for key, value in outputs.items():
        if posixpath.basename(key) == weights and value == digest:
            return posixpath.dirname(key)
    return None


def _metrics(root: Storage, manifest: dict[str, Any], folder_key: str | None,
             facts: ModelFacts) -> tuple[str | None, dict[str, Any] | None]:
    """(key, summary) of the run's test metrics for this model, or (None, None) with a warning."""
    outputs = manifest.get("outputs") or {}
    name = posixpath.basename(folder_key) if folder_key else facts.name
    wanted = {f"results/baseline/{name}_metrics.json", f"results/transformer/{name}_metrics.json"}
    key = next((k for k in outputs if k in wanted), None)
    if key is None:
        facts.warnings.append(f"run {facts.run_id} lists no metrics file for {name}: registered without metrics")
        return None, None
    try:
        record = root.read_json(key)
    except Exception:  # noqa: BLE001
        facts.warnings.append(f"{root.url(key)} cannot be read: registered without metrics")
        return key, None
    if not isinstance(record, dict) or record.get("run_id") != facts.run_id:
        other = record.get("run_id") if isinstance(record, dict) else "?"
        facts.warnings.append(f"{root.url(key)} is from another run now ({other}, not {facts.run_id}): "
                              "registered without metrics")
        return key, None
    summary = {f: record[f] for f in METRIC_FIELDS if f in record}
    if isinstance(record.get("intervals"), dict):
        summary["intervals"] = record["intervals"]
    return key, summary
