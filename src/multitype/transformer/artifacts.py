"""What a finished fine-tuning run leaves: the final model, metrics, summary, manifest."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Sequence

from multitype import layout
from multitype.manifest import write_manifest
from multitype.project import Project
from multitype.results import write_summary
from multitype.storage import Storage
from multitype.transformer.models import quiet_transformers

MODEL_JSON = "model.json"


def save_final_model(storage: Storage, slug: str, model: Any, tokenizer: Any, label_names: Sequence[str],
                     model_name: str, max_length: int) -> str:
    """Publish ``models/final/<slug>/`` in ``save_pretrained`` form (safetensors) + tokenizer + model.json.

    The folder loads with plain ``AutoModelForSequenceClassification`` /
    ``AutoTokenizer``; ``config.json`` carries ``id2label``/``label2id``.
    """
    key = layout.final_model(slug)
    model.config.id2label = dict(enumerate(label_names))
    model.config.label2id = {name: i for i, name in enumerate(label_names)}
    with tempfile.TemporaryDirectory(prefix="multitype-final-") as tmp:
        folder = Path(tmp)
        with quiet_transformers():
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
        info = {"kind": "transformer", "labels": list(label_names), "model_name": model_name, "max_length": max_length}
        (folder / MODEL_JSON).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        storage.put_dir(folder, key)
    return key


def write_results(project: Project, slug: str, record: dict[str, Any], inputs: Sequence[str],
                  extra: dict[str, Any]) -> str:
    """Write the metrics JSON, the summary CSV and the run manifest; return the metrics key."""
    storage = project.storage
    metrics_key = layout.transformer_metrics(slug)
    storage.write_json(metrics_key, record)
    summary_key = write_summary(storage, "transformer")
    write_manifest(project, inputs=inputs, outputs=[metrics_key, summary_key, layout.final_model(slug)], extra=extra)
    return metrics_key
