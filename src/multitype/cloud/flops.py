"""How much compute and memory fine-tuning a BERT-style encoder needs.

- shape: layers, hidden size, feed-forward size, heads, vocabulary and
  positions from the model's ``config.json`` (a local folder, the packaged
  ``minilm``, the Hugging Face cache), else a small table of common hub models
  (:data:`KNOWN_SHAPES`, from each model's ``config.json`` on the hub), so an
  estimate never downloads anything;
- FLOPs per training sample of ``s`` tokens: ``6 N s + 12 L d s^2`` (N the
  non-embedding parameters, L layers, d hidden; the second term is attention's
  scores and weighted sum, forward + backward), as in Chowdhery et al. 2022
  (PaLM), appendix B; a forward-only (evaluation) sample is a third of that;
- memory at a batch size: weights + gradients + AdamW's two moments in fp32
  (16 bytes per parameter), plus activations ``L b s d (34 + 5 a s / d)``
  bytes at 16-bit (twice that in fp32; ``2 L b s d`` bytes per layer input
  with gradient checkpointing), after Korthikanti et al. 2022, "Reducing
  Activation Recomputation in Large Transformer Models", section 4.1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from multitype.errors import ModelError

CUDA_CONTEXT_GIB = 1.0  # CUDA context + allocator slack, kept free on every GPU


@dataclass(frozen=True)
class ModelShape:
    """The sizes of an encoder that decide its FLOPs and memory."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    vocab: int
    positions: int
    source: str

    @property
    def nonembedding_params(self) -> int:
        """Attention (4 d^2) and feed-forward (2 d ff) weights of every layer (biases and norms left out)."""
        return self.layers * (4 * self.hidden ** 2 + 2 * self.hidden * self.intermediate)

    @property
    def params(self) -> int:
        """All weights: the layers plus token and position embeddings."""
        return self.nonembedding_params + (self.vocab + self.positions) * self.hidden


# config.json of each model on the Hugging Face hub (num_hidden_layers, hidden_size, intermediate_size,
# num_attention_heads, vocab_size, max_position_embeddings)
KNOWN_SHAPES = {
    "bert-base-uncased": (12, 768, 3072, 12, 30522, 512),
    "bert-base-cased": (12, 768, 3072, 12, 28996, 512),
    "bert-large-uncased": (24, 1024, 4096, 16, 30522, 512),
    "roberta-base": (12, 768, 3072, 12, 50265, 514),
    "roberta-large": (24, 1024, 4096, 16, 50265, 514),
    "distilbert-base-uncased": (6, 768, 3072, 12, 30522, 512),
    "distilroberta-base": (6, 768, 3072, 12, 50265, 514),
    "microsoft/deberta-v3-base": (12, 768, 3072, 12, 128100, 512),
    "sentence-transformers/all-MiniLM-L6-v2": (6, 384, 1536, 12, 30522, 512),
}


def _from_config(name: str, config: dict, source: str) -> ModelShape:
    # DistilBERT names its sizes differently (n_layers, dim, hidden_dim, n_heads)
    get = lambda *keys: next(int(config[k]) for k in keys if k in config)  # noqa: E731
    try:
        return ModelShape(name, get("num_hidden_layers", "n_layers"), get("hidden_size", "dim"),
                          get("intermediate_size", "hidden_dim"), get("num_attention_heads", "n_heads"),
                          get("vocab_size"), get("max_position_embeddings"), source)
    except StopIteration:
        raise ModelError(f"the config of model {name!r} ({source}) does not give its layer sizes") from None


def model_shape(name: str) -> ModelShape:
    """The shape of model ``name`` without downloading anything.

    Raises
    ------
    ModelError
        No config.json found and the name is not in :data:`KNOWN_SHAPES`.
    """
    from multitype.transformer.models import resolve_model

    source = resolve_model(name)
    path: Path | None = Path(source.location) / "config.json" if source.local else None
    if path is None:
        if name in KNOWN_SHAPES:
            return ModelShape(name, *KNOWN_SHAPES[name], source="config.json on the Hugging Face hub")
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(name, "config.json")
        except Exception:  # noqa: BLE001 - an odd repo id: treated as not cached
            cached = None
        path = Path(cached) if isinstance(cached, str) else None
    if path is None or not path.is_file():
        raise ModelError(f"no config.json for model {name!r} on this machine (not cached, not a folder); "
                         f"known offline: minilm, {', '.join(KNOWN_SHAPES)}; or pass a local model folder")
    where = "packaged all-MiniLM-L6-v2 config.json" if name == "minilm" else str(path)
    return _from_config(name, json.loads(path.read_text(encoding="utf-8")), where)


def train_flops(shape: ModelShape, tokens: int) -> float:
    """FLOPs to train on one sample of ``tokens`` tokens (forward + backward)."""
    return 6.0 * shape.nonembedding_params * tokens + 12.0 * shape.layers * shape.hidden * tokens ** 2


def eval_flops(shape: ModelShape, tokens: int) -> float:
    """FLOPs of one forward pass (a third of :func:`train_flops`)."""
    return train_flops(shape, tokens) / 3.0


def training_memory_gib(shape: ModelShape, batch_size: int, seq: int, *, half: bool,
                        checkpointing: bool = False) -> float:
    """GPU memory to fine-tune with AdamW at ``batch_size`` x ``seq`` tokens (see the module docstring)."""
    states = 16.0 * shape.params
    if checkpointing:
        acts = 2.0 * shape.layers * batch_size * seq * shape.hidden * (1 if half else 2)
    else:
        per_layer = seq * batch_size * shape.hidden * (34 + 5 * shape.heads * seq / shape.hidden)
        acts = shape.layers * per_layer * (1 if half else 2)
    return (states + acts) / 2 ** 30
