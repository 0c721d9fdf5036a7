"""Attention for CPU training: SDPA's math with a cheaper attention-dropout mask.

With dropout on, PyTorch's CPU ``scaled_dot_product_attention`` leaves its fused kernel for the math path and
draws the (batch, heads, length, length) dropout mask with ``bernoulli_`` in the compute dtype, which on CPUs
without MKL's fast generator (AMD here) took about a quarter of a MiniLM training step. This draws the mask as
bytes (``random_(0, 100)`` compared with ``100 * p``, the same keep probability when ``p`` has at most two
decimals, as every shipped model's 0.1 does; finer ``p`` uses 10,000 levels in int16) from the same global
generator, so checkpoints still capture its state and resume stays exact. Everything else (no dropout,
evaluation, GPUs, causal or biased attention) goes to transformers' own SDPA function unchanged.
"""

from __future__ import annotations

from typing import Any

import torch

NAME = "multitype_sdpa"
_registered = False


def _keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    levels, dtype = (100, torch.uint8) if abs(p * 100 - round(p * 100)) < 1e-9 else (10_000, torch.int16)
    return torch.empty(shape, dtype=dtype).random_(0, levels) >= round(p * levels)


def attention_forward(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    plain = (dropout == 0.0 or query.device.type != "cpu" or getattr(module, "num_key_value_groups", 1) > 1
             or kwargs.get("position_bias") is not None or (is_causal if is_causal is not None
                                                            else getattr(module, "is_causal", False)))
    if plain:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1)
    probs = probs * _keep_mask(probs.shape, dropout) * (1.0 / (1.0 - dropout))
    out = torch.matmul(probs, value)
    return out.transpose(1, 2).contiguous(), None


def use_for_training(model: Any) -> bool:
    """Switch a model that runs SDPA attention to :func:`attention_forward`; False when it does not use SDPA."""
    global _registered
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    from transformers import AttentionInterface

    if not _registered:
        AttentionInterface.register(NAME, attention_forward)
        _registered = True
    model.set_attn_implementation(NAME)
    return True
