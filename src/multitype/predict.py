"""``multitype predict``: batch predictions from a saved model to CSV or JSON Lines.

The model is a folder (a local path, an ``s3://`` URL, or a key under the
project root such as ``models/final/logreg``) holding a baseline or a
transformer (see :mod:`multitype.predictor`). The input is CSV, JSON, JSON
Lines or Parquet with a text column, or a ``.txt`` file with one text a line
(blank lines skipped). The output has one row per input text: ``row`` (1-based,
as in error messages), ``text``, ``predicted_label`` and one score column per
class, ``prob_<label>`` for probabilities or ``score_<label>`` for a linear
SVM's softmaxed margins (not calibrated probabilities).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import posixpath
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from multitype.data import sources
from multitype.errors import DataError, ModelError, UserError
from multitype.manifest import write_manifest
from multitype.predictor import BACKENDS, Predictor, check_backend_files, load_predictor
from multitype.project import Place, Project
from multitype.storage import Storage, check_key, is_remote

INPUT_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
                 ".pq": "parquet", ".txt": "txt"}
OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl"}


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _open_file(project: Project, location: str) -> tuple[Storage, str]:
    """``(storage, key)`` for a local path or an ``s3://`` URL of one file (its parent is the root)."""
    cfg = project.configs.project
    endpoint = cfg.storage.endpoint_url or project.storage.endpoint_url
    if is_remote(location):
        parent, name = posixpath.split(location.rstrip("/"))
        return Storage(parent, endpoint_url=endpoint, profile=cfg.aws.profile), name
    path = Path(location.removeprefix("file://")).expanduser().resolve()
    return Storage(str(path.parent)), path.name


def model_place(project: Project, model: str, echo: Callable[[str], None] | None = None) -> Place:
    """The model folder as a :class:`Place`: a local folder, an ``s3://`` URL, a key under the root, or a
    registry version (``registry:NAME`` for its production version, ``registry:NAME:K`` for version K).

    This is where ``predict``, ``export onnx``, ``serve`` and ``sagemaker deploy`` turn a model argument
    into a folder; a registry version is named on ``echo`` (default: stderr) as it is resolved.

    Raises
    ------
    ModelError
        No such folder.
    RegistryError
        No such registry name or version, no production version, or an invalid registry index.
    """
    from multitype.registry.ops import PREFIX, resolve

    if model.startswith(PREFIX):
        resolved = resolve(project.storage, model)
        (echo or _stderr)(resolved.describe(model))
        return resolved.place
    cfg = project.configs.project
    if is_remote(model):
        storage = Storage(model.rstrip("/"), endpoint_url=cfg.storage.endpoint_url or project.storage.endpoint_url,
                          profile=cfg.aws.profile)
        if not storage.isdir(""):
            raise ModelError(f"model folder {model} not found; check the URL or train the model first")
        return Place(storage, "")
    path = Path(model.removeprefix("file://")).expanduser()
    if path.is_dir():
        return Place(Storage(str(path.resolve())), "")
    try:
        key = check_key(model)
    except UserError:
        key = ""
    if key and project.storage.isdir(key):
        return Place(project.storage, key)
    raise ModelError(f"model folder {model} not found; pass models/final/<name> (train a model first)")


@contextlib.contextmanager
def model_folder(project: Project, model: str, backend: str = "torch") -> Iterator[Path]:
    """A local folder with the model's files: the folder itself, or a temp copy from S3.

    ``model`` is as :func:`model_place` takes it. A copy is made only when the folder has what ``backend``
    needs (:func:`~multitype.predictor.check_backend_files`).
    """
    place = model_place(project, model)
    check_backend_files(place.storage, model, backend, place.key)
    with place.storage.local_dir(place.key) as local:
        yield local


def read_texts(project: Project, location: str, text_field: str) -> tuple[list[str], str]:
    """The texts of an input file and its sha256.

    Decoded as the project's raw input is (:func:`multitype.data.sources.decode_text`):
    by its byte-order mark, else ``encoding`` in data_config.yaml, else UTF-8.

    Raises
    ------
    DataError
        Unknown extension, missing file, empty file, no ``text_field`` column,
        or a row whose text is missing or blank (the message names the row).
    """
    suffix = posixpath.splitext(location.rstrip("/"))[1].lower()
    if suffix not in INPUT_FORMATS:
        raise DataError(f"cannot tell the format of '{location}' from its extension; "
                        f"use one of {', '.join(sorted(INPUT_FORMATS))}")
    storage, key = _open_file(project, location)
    if not key or not storage.exists(key) or storage.isdir(key):
        raise DataError(f"input file '{location}' not found; check --input")
    data = storage.read_bytes(key)
    digest = hashlib.sha256(data).hexdigest()
    if suffix == ".txt":
        lines = [line for line in sources.decode_text(data, location, project.configs.data.encoding).splitlines()
                 if line.strip()]
        if not lines:
            raise DataError(f"{location} is empty; it needs one text a line")
        return lines, digest
    texts: list[str] = []
    for where, row in sources.PARSERS[INPUT_FORMATS[suffix]](data, location, project.configs.data.encoding):
        if not isinstance(row, dict):
            raise DataError(f"{location} {where}: expected an object with a '{text_field}' field, "
                            f"got a JSON {type(row).__name__}")
        if text_field not in row:
            columns = ", ".join(map(str, row)) or "none"
            raise DataError(f"{location} {where}: no '{text_field}' field (it has: {columns}); "
                            "pass --text-field with the right one")
        value = row[text_field]
        if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
            raise DataError(f"{location} {where}: empty '{text_field}'; fill it in or remove the row")
        if isinstance(value, (dict, list, tuple)) or getattr(value, "ndim", 0):
            raise DataError(f"{location} {where}: '{text_field}' is a {type(value).__name__}, expected a string")
        texts.append(str(value))
    if not texts:
        raise DataError(f"{location} holds no rows; it needs a '{text_field}' column with texts")
    return texts, digest


def default_output(input_path: str) -> str:
    """``news.csv`` -> ``news.predictions.csv`` (beside the input, local or S3)."""
    stem, _ = posixpath.splitext(input_path.rstrip("/"))
    return f"{stem}.predictions.csv"


def _table(texts: list[str], labels: list[str], scores: np.ndarray, predictor: Predictor) -> pd.DataFrame:
    frame = pd.DataFrame({"row": np.arange(1, len(texts) + 1), "text": texts, "predicted_label": labels})
    for i, column in enumerate(predictor.score_columns):
        frame[column] = scores[:, i].astype(np.float64).round(6)
    return frame


def _encode(frame: pd.DataFrame, fmt: str) -> bytes:
    if fmt == "csv":
        return frame.to_csv(index=False).encode("utf-8")
    buf = io.StringIO()
    for record in frame.to_dict(orient="records"):
        buf.write(json.dumps(record, ensure_ascii=False, default=_plain) + "\n")
    return buf.getvalue().encode("utf-8")


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


def predict_file(project: Project, model: str, input_path: str, output_path: str | None,
                 text_field: str | None, batch_size: int, force: bool = False, backend: str = "torch") -> str:
    """Predict every text of ``input_path`` with ``model`` and write the predictions.

    Parameters
    ----------
    project : Project
        Root (for model keys such as ``models/final/logreg``) and configs.
    model : str
        Model folder: local path, ``s3://`` URL or key under the root.
    input_path : str
        CSV/JSON/JSONL/Parquet file with ``text_field``, or ``.txt`` (one text a line).
    output_path : str, optional
        ``.csv`` or ``.jsonl`` (default: ``<input stem>.predictions.csv``).
    text_field : str, optional
        Column with the texts (default: ``text_field`` in data_config.yaml).
    batch_size : int
        Texts per model call.
    force : bool, default=False
        Overwrite ``output_path`` (local or S3) when it exists (DESIGN.md section 5).
    backend : {"torch", "onnx", "onnx-int8"}, default="torch"
        What runs the model (see :func:`multitype.predictor.load_predictor`).

    Returns
    -------
    str
        Where the predictions were written.

    Raises
    ------
    DataError
        Bad input (before the model loads), or ``output_path`` exists and
        ``force`` is not set.
    """
    if batch_size < 1:
        raise DataError(f"--batch-size must be at least 1, got {batch_size}")
    if backend not in BACKENDS:
        raise ModelError(f"--backend must be one of: {', '.join(BACKENDS)}; got {backend!r}")
    output_path = output_path or default_output(input_path)
    out_suffix = posixpath.splitext(output_path.rstrip("/"))[1].lower()
    if out_suffix not in OUTPUT_FORMATS:
        raise DataError(f"--output '{output_path}' must end in .csv or .jsonl")
    out_storage, out_key = _open_file(project, output_path)
    in_storage, in_key = _open_file(project, input_path)
    if out_storage.url(out_key) == in_storage.url(in_key):
        raise DataError(f"--output '{output_path}' is the input file; choose another name")
    if not force and out_storage.exists(out_key):
        raise DataError(f"{output_path} already exists; pass --force to overwrite it, or choose another --output")
    field = text_field or project.configs.data.text_field
    texts, input_sha = read_texts(project, input_path, field)  # bad input fails before the model loads

    console = Console(stderr=True, soft_wrap=True)
    with model_folder(project, model, backend) as folder:
        predictor = load_predictor(folder, backend=backend)
        card = folder / "model.json"
        model_info = json.loads(card.read_text(encoding="utf-8")) if card.is_file() else {}
    labels: list[str] = []
    parts: list[np.ndarray] = []
    chunk = batch_size * 8
    start = time.perf_counter()
    with Progress(TextColumn("predicting"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("predict", total=len(texts))
        for i in range(0, len(texts), chunk):
            part_labels, part_scores = predictor.predict(texts[i:i + chunk], batch_size=batch_size)
            labels += part_labels
            parts.append(part_scores)
            progress.advance(task, len(part_labels))
    seconds = max(time.perf_counter() - start, 1e-9)

    data = _encode(_table(texts, labels, np.concatenate(parts), predictor), OUTPUT_FORMATS[out_suffix])
    out_storage.write_bytes(out_key, data)
    console.print(f"{len(texts):,} texts, {len(texts) / seconds:,.0f}/s, with {predictor.kind} model {model}"
                  f"{'' if predictor.backend == 'torch' else f' on {predictor.backend}'}")
    write_manifest(project, external_inputs={f"input {input_path}": input_sha}, extra={"predict": {
        "model": model, "model_kind": predictor.kind, "backend": predictor.backend, "model_run_id": model_info.get("run_id"),
        "input": input_path, "text_field": field, "output": output_path,
        "output_sha256": hashlib.sha256(data).hexdigest(), "rows": len(texts),
        "seconds": round(seconds, 3), "samples_per_s": round(len(texts) / seconds, 2),
        "score_kind": predictor.score_kind, "labels": predictor.labels,
    }})
    return output_path
