"""What a finished fine-tuning run leaves: the final model, metrics, summary, manifest.

Each goes to its place in :class:`multitype.project.Outputs` (by default the
root's ``models/final/<slug>``, ``results/transformer/`` and ``runs/``), and is
hashed while it is written, for the manifest: nothing is read back from S3.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any, Sequence

from multitype import layout
from multitype.manifest import folder_hashes, write_manifest
from multitype.project import Place, Project
from multitype.results import write_summary
from multitype.storage import Storage
from multitype.transformer.models import quiet_transformers

MODEL_JSON = "model.json"


def output_name(project: Project, storage: Storage, key: str) -> str:
    """How the manifest names an output: its key under the root, else its full location."""
    return key if storage is project.storage else storage.url(key)


def save_final_model(place: Place, model: Any, tokenizer: Any, label_names: Sequence[str], model_name: str,
                     max_length: int, name: str | None = None) -> dict[str, str]:
    """Publish the final model to ``place`` in ``save_pretrained`` form (safetensors) + tokenizer + model.json.

    The folder loads with plain ``AutoModelForSequenceClassification`` /
    ``AutoTokenizer``; ``config.json`` carries ``id2label``/``label2id``.

    Returns
    -------
    dict
        ``{<name>/<file>: sha256}`` of every file, hashed from the local folder
        before it is published (``name`` defaults to ``place.key``).
    """
    model.config.id2label = dict(enumerate(label_names))
    model.config.label2id = {label: i for i, label in enumerate(label_names)}
    with tempfile.TemporaryDirectory(prefix="multitype-final-") as tmp:
        folder = Path(tmp)
        with quiet_transformers():
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
        info = {"kind": "transformer", "labels": list(label_names), "model_name": model_name, "max_length": max_length}
        (folder / MODEL_JSON).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        hashes = folder_hashes(folder, place.key if name is None else name)
        if place.key:
            place.storage.put_dir(folder, place.key)
        else:  # a folder of its own (SageMaker's SM_MODEL_DIR): filled file by file, not replaced
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                place.storage.put_file(path, path.relative_to(folder).as_posix())
    return hashes


def write_results(project: Project, slug: str, record: dict[str, Any], inputs: Sequence[str],
                  extra: dict[str, Any], output_hashes: dict[str, str] | None = None) -> str:
    """Write the metrics JSON, the summary CSV and the run manifest to the results root; return the metrics key.

    ``output_hashes`` (e.g. the final model's, from :func:`save_final_model`)
    go into the manifest beside those of the metrics and summary.
    """
    results = project.outputs.results
    metrics_key = layout.transformer_metrics(slug)
    data = (json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8")
    results.write_bytes(metrics_key, data)
    hashes = {output_name(project, results, metrics_key): hashlib.sha256(data).hexdigest()}
    summary_key = write_summary(results, "transformer")
    if summary_key is not None:  # a few kB, rebuilt from every model's metrics: read back
        hashes[output_name(project, results, summary_key)] = hashlib.sha256(results.read_bytes(summary_key)).hexdigest()
    write_manifest(project, inputs=inputs, extra=extra, output_hashes={**hashes, **(output_hashes or {})},
                   storage=results)
    return metrics_key
