"""``compile: auto|true|false``: torch.compile the encoder's layers for training.

Regional compilation: each block of the encoder's repeated layers (BERT's
``encoder.layer``) is compiled in place with ``nn.Module.compile``, so the
layers share one compiled graph (compiled once, not once per layer), the
parameters keep their names (checkpoints and the final model have the plain
state-dict keys, no ``_orig_mod.``) and nothing else in the loop changes.
Shapes are dynamic (``dynamic=True``): the length-grouped batches of every
width and the shorter last batch reuse the same graph instead of recompiling.

Evaluation and prediction run eagerly (:func:`eager`): a compiled graph is
specialised to training mode, and compiling an eval graph too would cost a
second compile for a few hundred validation texts.

``auto`` is on only where it was measured to pay (see README, fine-tuning):
not on CPU, where it made minilm's training steps slower (bf16 autocast,
max length 512, 2 cores) and adds its compile time to the run.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch

from multitype.errors import ModelError


def resolve_compile(requested: str | bool, device: torch.device, gradient_checkpointing: bool,
                    warn: Callable[[str], None]) -> bool:
    """Whether to compile: ``true``/``false`` as given, ``auto`` where measured to pay (never so far on CPU)."""
    if requested == "auto":
        return False
    if requested and gradient_checkpointing:
        warn("compile: true with gradient_checkpointing: true: the recomputed layers are compiled too, "
             "which is slow to compile and rarely faster")
    return bool(requested)


def repeated_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The members of the model's longest ModuleList whose members are all of one class (the layers)."""
    best: list[torch.nn.Module] = []
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > len(best):
            members = list(module)
            if len({type(m) for m in members}) == 1:
                best = members
    return best if len(best) > 1 else []


def compile_model(model: torch.nn.Module, device: torch.device) -> int:
    """Compile ``model``'s repeated layers in place (the whole model where it has none); the count compiled."""
    if not hasattr(torch, "compile"):
        raise ModelError("compile: true needs torch 2 or later (torch.compile); set compile: false")
    if device.type == "cpu":
        import torch._inductor.config as inductor

        # dropout masks from aten's generator, not inductor's own: measured 35% slower steps on CPU with
        # inductor's (minilm, length 512), and the same random stream as eager training
        inductor.fallback_random = True
    blocks = repeated_blocks(model)
    for block in blocks or [model]:
        block.compile(dynamic=True)
    return len(blocks) or 1


@contextlib.contextmanager
def eager() -> Iterator[None]:
    """Run compiled modules eagerly inside the block (evaluation, prediction)."""
    set_stance: Any = getattr(torch.compiler, "set_stance", None)
    if set_stance is None:
        yield
        return
    with set_stance("force_eager"):
        yield
