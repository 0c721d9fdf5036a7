"""``multitype export onnx``: a transformer model folder -> ``onnx/model.onnx`` (+ ``model.int8.onnx``), checked.

Route: find the model folder (a local folder, an ``s3://`` URL, or a key under
the root) and refuse what cannot be exported (a baseline, an export already
there without ``--force``, no check set) before any model loads; read the check
set (the root's ``data/processed/test_<N>class.csv``, or ``--input``); copy an
S3 folder to a temporary one; export with :func:`export_transformer`; quantize
with :func:`quantize_int8`; run :func:`~multitype.serve.onnx_check.check_agreement`;
and only when it passes publish ``onnx/`` (the models and ``agreement.json``)
beside the weights in one :meth:`~multitype.storage.Storage.put_dir`, so a failed
export leaves the previous one as it was.

The exporter is ``torch.onnx.export(..., dynamo=True)`` (``torch.export`` +
onnxscript), not ``optimum-onnx``: its newest release (0.1.0) requires
``transformers<4.58`` and the project runs transformers 5.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multitype import layout
from multitype.errors import DataError, ModelError, UserError
from multitype.manifest import folder_hashes, write_manifest
from multitype.predict import model_place
from multitype.project import Place, Project

QUANTIZE = ("int8",)
OPSET = 18
# the input names a Hugging Face sequence classifier takes, in the exported model's order
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class AgreementError(UserError):
    """The ONNX export disagrees with PyTorch on too many texts; nothing was published (exit 1)."""

    exit_code = 1


@dataclass
class ExportResult:
    """What :func:`export_onnx` published: the model folder, the files written, and the agreement report."""

    model: str
    files: list[str]
    report: dict[str, Any]


def export_transformer(folder: Path, dest: Path, opset: int = OPSET) -> Path:
    """Export the sequence classifier in ``folder`` to ``dest`` (float32 logits, dynamic batch and sequence axes).

    Raises
    ------
    ModelError
        The tokenizer asks for inputs other than :data:`INPUT_NAMES`.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from multitype.transformer.models import quiet_transformers

    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=torch.float32).eval()
    unknown = sorted(set(tokenizer.model_input_names) - set(INPUT_NAMES))
    if unknown:
        raise ModelError(f"{folder}: the tokenizer's inputs {unknown} are not supported by the ONNX export "
                         f"(it takes {', '.join(INPUT_NAMES)})")
    # two padded texts: torch.export treats an axis of size 0 or 1 as a constant, so the sample has neither
    sample = tokenizer(["An example sentence to trace the model with.", "A shorter one."], padding=True,
                       return_tensors="pt")
    names = [name for name in INPUT_NAMES if name in sample]
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)  # "torchvision is not installed" notices: nothing here uses it
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_logits_only(model), tuple(sample[name] for name in names), str(dest), input_names=names,
                              output_names=["logits"], dynamic_shapes={name: {0: batch, 1: sequence} for name in names},
                              opset_version=opset, dynamo=True, external_data=False, verbose=False)
    finally:
        logger.setLevel(level)
    return dest


def _logits_only(model: Any) -> Any:
    """``model`` as a module that takes tensors by position and returns only the logits (what ONNX outputs)."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits

    return Logits()


def quantize_int8(source: Path, dest: Path) -> Path:
    """Dynamic int8 quantisation (ONNX Runtime): int8 weights, one scale per output channel, activations
    quantised per call at run time.

    Per channel rather than one scale per tensor: on the benchmark's MiniLM (16 texts x 128 tokens) the
    largest logit difference from float32 fell from 0.16 to 0.05 at the same speed (177-178 ms a batch).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic's advice to pre-process (its shape inference fails on this graph)
    try:
        quantize_dynamic(str(source), str(dest), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)
    return dest


def _check_exportable(place: Place, model: str, force: bool) -> None:
    storage = place.storage
    if storage.exists(place.join("model.skops")):
        raise ModelError(f"{model} is a baseline (scikit-learn); ONNX export is for transformers, "
                         "serve baselines with --backend torch")
    if not storage.exists(place.join("config.json")):
        raise ModelError(f"{model} is not a transformer model folder (no config.json); "
                         "pass models/final/<name> of a trained transformer")
    if not force and storage.exists(place.join(layout.onnx_model())):
        raise ModelError(f"{model} already has {layout.onnx_model()}; pass --force to export it again")


def check_set(project: Project, input: str | None, num_labels: int) -> tuple[list[str], list[str], str, str]:
    """The texts and true labels of the check (``input``, else the root's test split), where they came from,
    and the file's sha256."""
    from multitype.data.sources import read_input

    cfg = project.configs
    if input is None:
        key = layout.processed_split("test", num_labels)
        if not project.storage.exists(key):
            raise DataError(f"no test split at {project.storage.url(key)} to check the export on; pass --root of "
                            "the project that trained the model, or --input FILE with text and label columns")
        location, text_field, label_field = project.storage.url(key), "text", "label"
    else:
        location, text_field, label_field = input, cfg.data.text_field, cfg.data.label_field
    raw = read_input(location, text_field=text_field, label_field=label_field,
                     endpoint_url=cfg.project.storage.endpoint_url or project.storage.endpoint_url,
                     profile=cfg.project.aws.profile, encoding=cfg.data.encoding)
    if not raw.records:
        raise DataError(f"{location} holds no texts to check the export on")
    return [r["text"] for r in raw.records], [r["label"] for r in raw.records], location, raw.sha256


def export_onnx(project: Project, model: str, quantize: str | None = None, input: str | None = None,
                force: bool = False, batch_size: int = 32) -> ExportResult:
    """Export a transformer model folder to ONNX (and int8), check it against PyTorch, publish ``onnx/``.

    Parameters
    ----------
    project : Project
        The root (test split, model keys, manifest) and the configs.
    model : str
        A transformer model folder: local, ``s3://`` or a key under the root.
    quantize : {"int8"}, optional
        Also write ``onnx/model.int8.onnx`` (dynamic int8 quantisation).
    input : str, optional
        A labelled file (data_config.yaml's text and label fields) to check on instead of the test split.
    force : bool, default=False
        Replace an existing export.
    batch_size : int, default=32
        Texts per model call in the check.

    Returns
    -------
    ExportResult

    Raises
    ------
    ModelError
        A baseline, not a transformer folder, or an export already there without ``force``.
    DataError
        No test split and no ``input``, or an unreadable ``input``.
    AgreementError
        An ONNX model agrees with PyTorch on fewer than 99.5% of the texts (nothing published).
    """
    if quantize is not None and quantize not in QUANTIZE:
        raise UserError(f"--quantize must be one of: {', '.join(QUANTIZE)}; got {quantize!r}")
    if model.startswith("registry:"):  # writing onnx/ into a registered copy would change a version's sha256
        raise ModelError(f"{model}: a registered version never changes; export the folder it was registered from "
                         "and register that folder again ('multitype registry add')")
    place = model_place(project, model)
    _check_exportable(place, model, force)
    config = json.loads(place.storage.read_text(place.join("config.json")))
    num_labels = len(config.get("id2label") or {}) or int(config.get("num_labels", 2))
    texts, truth, source, sha256 = check_set(project, input, num_labels)

    backends = ["onnx", "onnx-int8"] if quantize else ["onnx"]
    with place.storage.local_dir(place.key) as folder, tempfile.TemporaryDirectory(prefix="multitype-onnx-") as tmp:
        staging = Path(tmp) / "model"
        (staging / layout.ONNX_DIR).mkdir(parents=True)
        # the check loads the folder's tokenizer and weights beside the new files: link them into the staging copy
        for item in folder.iterdir():
            if item.name != layout.ONNX_DIR:
                (staging / item.name).symlink_to(item.resolve(), target_is_directory=item.is_dir())
        start = time.perf_counter()
        export_transformer(folder, staging / layout.onnx_model())
        export_s = time.perf_counter() - start
        if quantize:
            quantize_int8(staging / layout.onnx_model(), staging / layout.onnx_model(quantized=True))
        from multitype.serve.onnx_check import MIN_AGREEMENT, check_agreement

        report = check_agreement(staging, texts, truth, backends, batch_size=batch_size)
        report = {"model": model, "check_set": source, "exporter": "torch.onnx (dynamo)", "opset": OPSET,
                  "export_s": round(export_s, 1), **report, "versions": _versions()}
        if not report["passed"]:
            worst = min(backends, key=lambda b: report[b]["label_agreement"])
            raise AgreementError(
                f"{worst} agrees with PyTorch on {report[worst]['label_agreement']:.1%} of {len(texts)} texts "
                f"(at least {MIN_AGREEMENT:.1%} needed; max probability difference "
                f"{report[worst]['max_prob_diff']:.3g}); nothing was written to {place.url(layout.ONNX_DIR)}")
        (staging / layout.ONNX_AGREEMENT).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        hashes = folder_hashes(staging / layout.ONNX_DIR, place.url(layout.ONNX_DIR))
        place.storage.put_dir(staging / layout.ONNX_DIR, place.join(layout.ONNX_DIR))
    files = [layout.onnx_model(b == "onnx-int8") for b in backends] + [layout.ONNX_AGREEMENT]
    write_manifest(project, external_inputs={f"check set {source}": sha256}, output_hashes=hashes,
                   extra={"export_onnx": {"model": model, "quantize": quantize, "files": files,
                                          "agreement": {k: v for k, v in report.items() if k != "versions"}}})
    return ExportResult(place.url(), files, report)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    return {name: md.version(name) for name in ("torch", "transformers", "onnx", "onnxruntime", "onnxscript")}
