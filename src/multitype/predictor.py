"""Saved model folders -> predictors: one interface for baselines and transformers.

A model folder is either

* a baseline: ``model.json`` (``kind: sklearn``) + ``model.skops``, a fitted
  scikit-learn ``Pipeline`` saved with skops (no pickle). Loading checks the
  file's types against :data:`TRUSTED_TYPES` first and refuses anything else;
* a transformer in ``save_pretrained`` form: ``config.json`` + safetensors
  weights + tokenizer files (``model.json`` with ``kind: transformer`` is
  optional); class names come from ``config.id2label``.

``load_predictor(folder).predict(texts)`` returns predicted class names and a
``(n, n_classes)`` score matrix whose rows sum to 1 (``folder`` may also be an
``s3://`` URL: it is copied to a temporary folder, loaded, and the copy removed).
This is the package's public inference API, also exported as
``multitype.load_predictor``. For LogisticRegression and
transformers these are probabilities (``score_kind == "prob"``). LinearSVC has
no probabilities: its scores are a softmax of the decision function
(``score_kind == "score"``), which ranks classes like the SVM does but is not
calibrated; output columns are named ``score_<label>`` so nobody reads them as
probabilities.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from multitype.errors import ModelError

MODEL_JSON = "model.json"
SKOPS_FILE = "model.skops"
# Types outside skops' default trust list that a multitype baseline may contain.
# Anything else in a .skops file is refused (a tampered or foreign file).
TRUSTED_TYPES: tuple[str, ...] = ("multitype.tfidf.FastTfidfVectorizer",)
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
BACKENDS = ("torch", "onnx", "onnx-int8")


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax (numerically stable)."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


# --- baselines: skops files --------------------------------------------------------------
def save_sklearn_model(pipeline: Any, folder: str | Path, info: dict[str, Any]) -> Path:
    """Write ``model.skops`` and ``model.json`` for a fitted pipeline into a local folder.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        Fitted on class ids ``0..n-1`` that index ``info["labels"]``.
    folder : str or Path
        A local folder (created if missing).
    info : dict
        Must hold ``labels``; saved in ``model.json`` with ``kind: sklearn``.

    Returns
    -------
    Path
        The folder.
    """
    import skops.io as sio

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = sio.dumps(pipeline)
    foreign = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
    if foreign:  # a programming error: loading would refuse this file
        raise RuntimeError(f"pipeline holds types outside TRUSTED_TYPES: {foreign}")
    (folder / SKOPS_FILE).write_bytes(data)
    card = {"kind": "sklearn", "format": "skops", "file": SKOPS_FILE, **info,
            "score_kind": "prob" if hasattr(pipeline, "predict_proba") else "score",
            "trusted_types": list(TRUSTED_TYPES), "versions": _versions()}
    (folder / MODEL_JSON).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return folder


def load_sklearn_pipeline(path: str | Path) -> Any:
    """Load a ``.skops`` file, trusting only skops' defaults and :data:`TRUSTED_TYPES`.

    Raises
    ------
    ModelError
        The file is not a skops file, or holds a type that is not trusted.
    """
    import skops.io as sio

    path = Path(path)
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # zipfile.BadZipFile, KeyError, JSON errors: not a skops file
        raise ModelError(f"{path}: not a readable skops file ({type(exc).__name__}); "
                         "retrain with 'multitype train baseline'") from None
    refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if refused:
        raise ModelError(f"{path}: refusing to load types that multitype does not trust: {', '.join(refused)}; "
                         "only load baselines saved by 'multitype train baseline'")
    return sio.load(path, trusted=untrusted)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    return {name: md.version(name) for name in ("scikit-learn", "skops", "numpy", "scipy")}


# --- predictors ---------------------------------------------------------------------------
class Predictor:
    """Predicts class names and per-class scores for a list of texts.

    Attributes
    ----------
    labels : list of str
        Class names in score-column order.
    kind : str
        ``"sklearn"`` or ``"transformer"``.
    score_kind : str
        ``"prob"`` (probabilities) or ``"score"`` (softmax of SVM margins).
    path : Path
        The folder it was loaded from (for an ``s3://`` model: the temporary copy, removed after loading).
    source : str
        What was passed to :func:`load_predictor` (a folder or an ``s3://`` URL).
    name : str
        ``model_name`` (transformers) or ``model`` (baselines) from ``model.json``, else the folder's name.
    max_length : int or None
        Tokens a text is cut to (transformers); ``None`` for baselines, which read the whole text.
    backend : str
        What runs the model: ``"torch"`` (PyTorch, or scikit-learn for baselines), ``"onnx"`` or
        ``"onnx-int8"`` (ONNX Runtime, see :mod:`multitype.onnx_predictor`).
    """

    kind = ""
    backend = "torch"
    max_length: int | None = None

    def __init__(self, path: Path, labels: Sequence[str], score_kind: str) -> None:
        self.path = path
        self.source = str(path)
        self.labels = list(labels)
        self.score_kind = score_kind
        card = _card(path)
        self.name = str(card.get("model_name") or card.get("model") or path.name)

    def truncated(self, texts: Sequence[str]) -> list[bool]:
        """Per text: is it longer than the model reads (cut to :attr:`max_length` tokens)? Never for baselines."""
        return [False] * len(texts)

    @property
    def score_columns(self) -> list[str]:
        """``prob_<label>`` or ``score_<label>`` per class."""
        return [f"{self.score_kind}_{label}" for label in self.labels]

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> tuple[list[str], np.ndarray]:
        """Class names and an ``(n, n_classes)`` float32 score matrix (rows sum to 1)."""
        if not len(texts):
            return [], np.zeros((0, len(self.labels)), dtype=np.float32)
        scores = np.concatenate([self._scores(list(texts[i:i + batch_size]))
                                 for i in range(0, len(texts), batch_size)]).astype(np.float32)
        return [self.labels[i] for i in scores.argmax(axis=1)], scores

    def _scores(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError


class SklearnPredictor(Predictor):
    """A baseline pipeline saved by :func:`save_sklearn_model`."""

    kind = "sklearn"

    def __init__(self, path: Path, pipeline: Any, labels: Sequence[str]) -> None:
        super().__init__(path, labels, "prob" if hasattr(pipeline, "predict_proba") else "score")
        self.pipeline = pipeline
        # classes_ are the ids seen in training; map them onto all label columns
        self._columns = np.asarray(pipeline.classes_, dtype=np.int64)
        if self._columns.min() < 0 or self._columns.max() >= len(self.labels):
            raise ModelError(f"{path}: the pipeline's classes do not match the labels in {MODEL_JSON}")

    def _scores(self, texts: list[str]) -> np.ndarray:
        if self.score_kind == "prob":
            part = self.pipeline.predict_proba(texts)
        else:
            margins = self.pipeline.decision_function(texts)
            if margins.ndim == 1:  # binary: one margin for the positive class
                margins = np.column_stack([-margins, margins])
            part = softmax(margins)
        full = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        full[:, self._columns] = part
        return full


class TransformerPredictor(Predictor):
    """A sequence classifier in ``save_pretrained`` form, run under ``torch.inference_mode``.

    Texts are sorted by length before batching (less padding) and truncated to
    the model's maximum length; the results come back in input order. Subclasses
    that run the same folder on another engine (:class:`multitype.onnx_predictor.OnnxPredictor`)
    share the tokenizer, labels, length limit, ordering and truncation flags, and
    replace :meth:`_load` and :meth:`_scores`.
    """

    kind = "transformer"

    def __init__(self, path: Path, device: str | None = None) -> None:
        from transformers import AutoTokenizer

        from multitype.transformer.models import quiet_transformers

        try:
            with quiet_transformers():  # load reports and "Loading weights" bars
                self.tokenizer = AutoTokenizer.from_pretrained(str(path))
                config = self._load(path, device)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: cannot load the transformer ({' '.join(str(exc).split())[:200]})") from None
        id2label = {int(k): v for k, v in (config.id2label or {}).items()}
        labels = [id2label.get(i, f"LABEL_{i}") for i in range(config.num_labels)]
        super().__init__(path, labels, "prob")
        self.max_length = self._max_length(path, config)

    def _load(self, path: Path, device: str | None) -> Any:
        """Load the model itself; return its ``transformers`` config."""
        import torch
        from transformers import AutoModelForSequenceClassification

        self.model = AutoModelForSequenceClassification.from_pretrained(str(path))
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device).eval()
        return self.model.config

    def _max_length(self, path: Path, config: Any) -> int:
        limits = [getattr(config, "max_position_embeddings", None), self.tokenizer.model_max_length,
                  _card(path).get("max_length")]
        # tokenizers without a limit report a huge sentinel (int(1e30))
        usable = [int(x) for x in limits if isinstance(x, (int, float)) and 0 < x < 1_000_000]
        return min(usable) if usable else 512

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> tuple[list[str], np.ndarray]:
        order = np.argsort([len(t) for t in texts], kind="stable")
        labels, scores = super().predict([texts[i] for i in order], batch_size)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return [labels[i] for i in inverse], scores[inverse]

    def truncated(self, texts: Sequence[str]) -> list[bool]:
        """Per text: does it have more than :attr:`max_length` tokens (special tokens included)?

        A text of ``b`` UTF-8 bytes has at most ``b`` tokens (WordPiece, byte-level BPE and
        SentencePiece never make more tokens than bytes) plus a few special ones, so only
        texts longer than that are tokenized to count.
        """
        assert self.max_length is not None
        flags = [False] * len(texts)
        long = [i for i, text in enumerate(texts) if len(text.encode("utf-8")) + 4 > self.max_length]
        if long:
            ids = self.tokenizer([texts[i] for i in long], truncation=False, verbose=False)["input_ids"]
            for i, tokens in zip(long, ids):
                flags[i] = len(tokens) > self.max_length
        return flags

    def _scores(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True,
                               return_tensors="pt").to(self.device)
        with torch.inference_mode():
            logits = self.model(**batch).logits
        return torch.softmax(logits.float(), dim=-1).cpu().numpy()


def _card(folder: Path) -> dict[str, Any]:
    """``model.json`` of a folder as a dict (``{}`` when absent or not an object)."""
    card = folder / MODEL_JSON
    if not card.is_file():
        return {}
    try:
        data = json.loads(card.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def model_kind(folder: str | Path) -> str:
    """``"sklearn"`` or ``"transformer"`` for a local model folder.

    Raises
    ------
    ModelError
        The folder is missing or holds neither kind of model.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"model folder {folder} not found; pass models/final/<name> (train a model first)")
    card = folder / MODEL_JSON
    if card.is_file():
        try:
            kind = json.loads(card.read_text(encoding="utf-8")).get("kind")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            raise ModelError(f"{card}: not valid JSON; retrain the model or remove the file") from None
        if kind in ("sklearn", "transformer"):
            return kind
        raise ModelError(f"{card}: unknown kind {kind!r} (expected 'sklearn' or 'transformer')")
    if (folder / "config.json").is_file() and any((folder / name).is_file() for name in _WEIGHT_FILES):
        return "transformer"
    raise ModelError(f"{folder} is not a model folder: expected {MODEL_JSON} + {SKOPS_FILE} (a baseline) "
                     "or config.json + model.safetensors (a transformer)")


def load_predictor(model: str | Path, device: str | None = None, *, backend: str = "torch",
                   endpoint_url: str | None = None, profile: str | None = None) -> Predictor:
    """Load a saved model, baseline or transformer, for inference.

    Parameters
    ----------
    model : str or Path
        A model folder (``models/final/<name>``, as ``multitype train`` writes it) on the
        local disk, or an ``s3://bucket/prefix/models/final/<name>`` URL. An S3 folder is
        copied to a temporary folder, loaded into memory and the copy removed.
    device : str, optional
        Torch device for transformers (default: CUDA when available).
    backend : {"torch", "onnx", "onnx-int8"}, default="torch"
        ``onnx`` and ``onnx-int8`` run a transformer's ``onnx/model.onnx`` or
        ``onnx/model.int8.onnx`` (written by ``multitype export onnx``) with ONNX Runtime
        on the CPU; same labels, scores and truncation flags as ``torch``.
    endpoint_url, profile : str, optional
        S3 endpoint and AWS profile for an ``s3://`` model (default: ``AWS_ENDPOINT_URL``
        and the standard AWS credential sources).

    Returns
    -------
    Predictor
        ``predict(texts, batch_size=64)`` returns ``(labels, scores)``: a predicted class
        name per text and an ``(n, n_classes)`` float32 matrix whose columns follow
        ``labels`` and whose rows sum to 1 (probabilities when ``score_kind == "prob"``).
        Texts are split into batches of ``batch_size`` internally.

    Raises
    ------
    ModelError
        Missing folder, unknown layout, untrusted skops types, unreadable weights, an unknown
        backend, an ONNX backend for a baseline, or ONNX files not exported yet.

    Examples
    --------
    >>> from multitype import load_predictor
    >>> p = load_predictor("models/final/logreg")                      # doctest: +SKIP
    >>> labels, scores = p.predict(["The striker scored twice."])      # doctest: +SKIP
    >>> labels[0], dict(zip(p.labels, scores[0].round(3)))             # doctest: +SKIP
    ('sports', {'business': 0.05, 'politics': 0.04, 'sports': 0.87, 'tech': 0.04})
    """
    from multitype.storage import is_remote

    if backend not in BACKENDS:
        raise ModelError(f"backend must be one of: {', '.join(BACKENDS)}; got {backend!r}")
    source = str(model)
    if is_remote(source):
        from multitype.storage import Storage

        storage = Storage(source.rstrip("/"), endpoint_url=endpoint_url, profile=profile)
        if not storage.isdir(""):
            raise ModelError(f"model folder {source} not found; check the URL or train the model first")
        check_backend_files(storage, source, backend)
        with storage.local_dir("") as local:
            predictor = _load_local(local, device, backend)
    else:
        predictor = _load_local(Path(source.removeprefix("file://")).expanduser(), device, backend)
    predictor.source = source
    return predictor


def check_backend_files(storage: Any, source: str, backend: str, key: str = "") -> None:
    """Refuse ``backend`` for the model folder ``key`` of ``storage`` (a :class:`~multitype.storage.Storage`)
    before it is copied: a baseline for an ONNX backend, or a missing ONNX file. Names ``source``, not a copy."""
    if backend == "torch":
        return
    from multitype import layout
    from multitype.onnx_predictor import missing_onnx

    def exists(name: str) -> bool:
        return storage.exists(f"{key}/{name}" if key else name)

    if exists(SKOPS_FILE):
        raise _baseline_refusal(source, backend)
    if not exists(layout.onnx_model(backend == "onnx-int8")):
        raise missing_onnx(source, backend == "onnx-int8")


def _load_local(folder: Path, device: str | None, backend: str = "torch") -> Predictor:
    kind = model_kind(folder)
    if kind == "transformer" and backend != "torch":
        from multitype.onnx_predictor import OnnxPredictor

        return OnnxPredictor(folder, quantized=backend == "onnx-int8")
    if kind == "transformer":
        return TransformerPredictor(folder, device=device)
    if backend != "torch":
        raise _baseline_refusal(str(folder), backend)
    card = json.loads((folder / MODEL_JSON).read_text(encoding="utf-8"))
    labels = card.get("labels")
    if not isinstance(labels, list) or not labels:
        raise ModelError(f"{folder / MODEL_JSON}: no 'labels' list; retrain with 'multitype train baseline'")
    skops_file = folder / SKOPS_FILE
    if not skops_file.is_file():
        raise ModelError(f"{skops_file} not found; the model folder is incomplete, retrain it")
    return SklearnPredictor(folder, load_sklearn_pipeline(skops_file), labels)


def _baseline_refusal(folder: str, backend: str) -> ModelError:
    return ModelError(f"{folder} is a baseline (scikit-learn); the {backend} backend runs transformers only: "
                      "use the torch backend")
