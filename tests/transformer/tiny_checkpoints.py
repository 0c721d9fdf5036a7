"""A tiny model trained step by step with real step checkpoints, and a save that kills itself at a chosen stage.

:func:`main`, run in a child process, trains towards step 8, saving
``tiny-step2``, ``-step4`` and ``-step6`` through
:class:`~multitype.transformer.checkpoint.Checkpointer` with an inline
publisher, and SIGKILLs itself at ``stage`` (see :data:`STAGES`) from a
patched public ``Storage`` method: a deterministic spot kill.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from multitype.storage import Storage
from multitype.transformer import checkpoint
from multitype.uploader import FolderPublisher

SLUG = "tiny"
EVERY = 2
# stage -> (the newest complete step checkpoint left behind, what the kill interrupts)
STAGES = {
    "before-first-file": 4,   # the save of step 6 starts: nothing of it published yet
    "mid-file": 4,            # step 6 half published: some files, one of them cut short
    "before-marker": 4,       # every file of step 6 published, its marker not yet
    "deleting-marker": 6,     # step 6 complete; killed as the deletion of step 2 starts
    "deleting-files": 6,      # step 6 complete; step 2's marker gone and some of its files
}


def make_model() -> tuple[torch.nn.Module, torch.optim.Optimizer, Any]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    return model, optimizer, scheduler


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, step: int) -> None:
    """Optimizer step ``step`` (1-based) on data that depends only on ``step``."""
    gen = torch.Generator().manual_seed(step)
    x, y = torch.randn(8, 16, generator=gen), torch.randint(0, 4, (8,), generator=gen)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def state(step: int) -> dict[str, Any]:
    return {"global_step": step, "epoch": 0, "iteration": step, "labels": ["a", "b", "c", "d"]}


def train(checkpointer: checkpoint.Checkpointer | None, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
          scheduler: Any, start: int, stop: int) -> None:
    """Steps ``start+1 .. stop``, a step checkpoint every :data:`EVERY` steps."""
    for step in range(start + 1, stop + 1):
        train_step(model, optimizer, scheduler, step)
        if checkpointer is not None and step % EVERY == 0:
            checkpointer.save_step(step, model, state(step), optimizer, scheduler, None)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def patch_kill(stage: str) -> None:
    """Make the save of step 6 (or the deletion of step 2 after it) SIGKILL this process at ``stage``."""
    put_dir, rm = Storage.put_dir, Storage.rm

    def killing_put_dir(self: Storage, local_dir: Any, key: str, marker: bool = True) -> None:
        if key.endswith(f"{SLUG}-step6"):
            if stage == "before-first-file":
                die()
            if stage == "before-marker":
                put_dir(self, local_dir, key, marker=False)
                die()
            if stage == "mid-file":
                files = sorted(p for p in Path(local_dir).iterdir() if p.is_file())
                partial = Path(tempfile.mkdtemp(prefix="partial-"))
                for f in files[:len(files) // 2]:
                    shutil.copy(f, partial / f.name)
                cut = files[len(files) // 2]
                (partial / cut.name).write_bytes(cut.read_bytes()[: max(cut.stat().st_size // 2, 1)])
                put_dir(self, partial, key, marker=False)
                die()
        put_dir(self, local_dir, key, marker)

    def killing_rm(self: Storage, key: str, recursive: bool = False) -> None:
        if f"{SLUG}-step2" in key:
            if stage == "deleting-marker":
                die()
            if stage == "deleting-files" and recursive:
                rm(self, f"{key}/{checkpoint.WEIGHTS}")
                die()
        rm(self, key, recursive)

    Storage.put_dir = killing_put_dir  # type: ignore[method-assign]
    Storage.rm = killing_rm  # type: ignore[method-assign]


def main(root: str, folder: str, stage: str, env: dict[str, str]) -> None:
    os.environ.update(env)  # the test's environment (S3 endpoint and keys), not the forkserver's
    torch.set_num_threads(1)
    patch_kill(stage)
    storage = Storage(root)
    checkpointer = checkpoint.Checkpointer(storage, folder, SLUG, FolderPublisher(storage, background=False))
    model, optimizer, scheduler = make_model()
    train(checkpointer, model, optimizer, scheduler, 0, 8)
    sys.exit(f"stage {stage!r} never killed the save")
