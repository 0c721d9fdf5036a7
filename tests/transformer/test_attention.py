"""CPU training attention (multitype.transformer.attention): SDPA's result, a cheaper dropout mask."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F

from multitype.transformer import attention, models


def _qkv(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 3, 10, 8, generator=g) for _ in range(3))
    mask = torch.ones(2, 1, 10, 10, dtype=torch.bool)
    mask[1, :, :, 6:] = False  # padding keys of the second text
    return q, k, v, mask


def test_with_every_value_kept_it_is_sdpa_scaled_by_the_keep_probability(monkeypatch) -> None:
    q, k, v, mask = _qkv()
    monkeypatch.setattr(attention, "_keep_mask", lambda shape, p: torch.ones(shape, dtype=torch.bool))
    module = types.SimpleNamespace(is_causal=False)
    out, _ = attention.attention_forward(module, q, k, v, mask, dropout=0.1)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)
    assert out.shape == (2, 10, 3, 8)
    assert torch.allclose(out, ref / 0.9, atol=1e-5)


def test_without_dropout_it_is_transformers_sdpa_exactly() -> None:
    q, k, v, mask = _qkv(1)
    module = types.SimpleNamespace(is_causal=False)
    out, _ = attention.attention_forward(module, q, k, v, mask, dropout=0.0)
    assert torch.equal(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).contiguous())


@pytest.mark.parametrize("p", [0.1, 0.25, 0.1234])
def test_the_mask_keeps_one_minus_p_and_follows_the_global_generator(p: float) -> None:
    torch.manual_seed(3)
    first = attention._keep_mask(torch.Size([64, 64, 64]), p)
    torch.manual_seed(3)
    again = attention._keep_mask(torch.Size([64, 64, 64]), p)
    assert torch.equal(first, again)  # the generator a checkpoint saves decides it: resume stays exact
    assert abs(first.float().mean().item() - (1 - p)) < 0.005


def test_a_minilm_switches_for_training_and_saves_no_trace_of_it(tmp_path) -> None:
    model = models.load_classifier(models.resolve_model("minilm"), ["a", "b"])
    ids = torch.randint(1000, 5000, (2, 12))
    model.eval()
    before = model(input_ids=ids).logits
    assert attention.use_for_training(model) and model.config._attn_implementation == attention.NAME
    assert torch.equal(model(input_ids=ids).logits, before)  # evaluation: no dropout, SDPA's own path
    model.train()
    model(input_ids=ids).logits.sum().backward()  # the training path runs and has gradients
    assert model.classifier.weight.grad is not None
    model.save_pretrained(tmp_path)
    assert attention.NAME not in (tmp_path / "config.json").read_text()
