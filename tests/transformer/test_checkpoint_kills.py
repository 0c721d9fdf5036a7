"""Step checkpoints survive a kill at every stage of a save, on a local root and in S3 (SeaweedFS).

The save runs in a child process (forked from a forkserver that imported torch
and the storage code once) that publishes inline and SIGKILLs itself at the
stage (see ``tiny_checkpoints.py``): before step 6's first file, mid-file,
just before its marker, and during the deletion of step 2 that follows it.
Afterwards the newest complete checkpoint is found (never an incomplete one,
never nothing), and a resumed run goes on from it to the same weights as a run
that was never killed, leaving the newest two step checkpoints.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import pytest
import torch

from multitype.storage import Storage
from multitype.transformer import checkpoint
from multitype.uploader import FolderPublisher
from tests.transformer import tiny_checkpoints as tiny


def kill_during_save(root: str, folder: str, stage: str) -> None:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "multitype.storage", "tests.transformer.tiny_checkpoints"])
    child = context.Process(target=tiny.main, args=(root, folder, stage, dict(os.environ)))
    child.start()
    child.join(timeout=120)
    if child.exitcode is None:
        child.kill()
        child.join()
    assert child.exitcode == -signal.SIGKILL, f"stage {stage}: exit code {child.exitcode}"


def uninterrupted(steps: int) -> dict[str, torch.Tensor]:
    model, optimizer, scheduler = tiny.make_model()
    tiny.train(None, model, optimizer, scheduler, 0, steps)
    return model.state_dict()


def resume_and_finish(storage: Storage, folder: str, expected_step: int) -> None:
    """Resume from the newest valid checkpoint (it must be ``expected_step``), train to step 8, check the result."""
    warnings: list[str] = []
    point = checkpoint.find_resume_point(storage, tiny.SLUG, warnings.append, folder)
    assert point is not None, warnings
    assert point.key == checkpoint.layout.checkpoint(tiny.SLUG, f"step{expected_step}", folder)
    assert point.state["global_step"] == expected_step
    model, optimizer, scheduler = tiny.make_model()
    point.load_weights(model)
    point.load_training_state(optimizer, scheduler, None)
    point.close()
    checkpointer = checkpoint.Checkpointer(storage, folder, tiny.SLUG, FolderPublisher(storage, background=False))
    tiny.train(checkpointer, model, optimizer, scheduler, expected_step, 8)
    for name, want in uninterrupted(8).items():
        assert torch.equal(model.state_dict()[name], want), name
    # the newest two step checkpoints, complete; the killed save and the half-deleted one are gone or replaced
    keys = checkpoint.checkpoint_keys(storage, tiny.SLUG, folder)
    assert keys == [checkpoint.layout.checkpoint(tiny.SLUG, tag, folder) for tag in ("step6", "step8")]
    assert all(storage.is_complete(key) for key in keys)
    again = checkpoint.find_resume_point(storage, tiny.SLUG, warnings.append, folder)
    assert again is not None and again.state["global_step"] == 8
    again.close()


@pytest.mark.parametrize("stage", list(tiny.STAGES))
def test_kill_at_every_stage_of_a_local_save_then_resume(stage: str, tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    kill_during_save(root, "models/checkpoints", stage)
    resume_and_finish(Storage(root), "models/checkpoints", tiny.STAGES[stage])


@pytest.mark.parametrize("stage", list(tiny.STAGES))
def test_kill_at_every_stage_of_an_s3_save_then_resume(stage: str, s3_server) -> None:
    root = f"s3://{s3_server.make_bucket('kill')}/proj"
    kill_during_save(root, "models/checkpoints", stage)
    keys = s3_server.list_keys(root[len("s3://"):].split("/")[0], "proj/models/checkpoints/tiny-step6/")
    if tiny.STAGES[stage] == 4:
        assert "proj/models/checkpoints/tiny-step6/_COMPLETE" not in keys
    resume_and_finish(Storage(root), "models/checkpoints", tiny.STAGES[stage])


def test_a_checkpoint_folder_of_its_own(tmp_path: Path) -> None:
    """A checkpoint folder given as a storage of its own (SageMaker's /opt/ml/checkpoints): key ``""``."""
    root = str(tmp_path / "opt-ml-checkpoints")
    kill_during_save(root, "", "before-marker")
    resume_and_finish(Storage(root), "", 4)


def test_an_old_last_checkpoint_is_resumed_then_replaced(tmp_path: Path) -> None:
    """``<slug>-last`` of earlier versions: resumed from when newest, deleted once a step checkpoint is complete."""
    storage = Storage(str(tmp_path / "root"))
    folder = "models/checkpoints"
    publisher = FolderPublisher(storage, background=False)
    old = checkpoint.Checkpointer(storage, folder, tiny.SLUG, publisher)
    model, optimizer, scheduler = tiny.make_model()
    tiny.train(None, model, optimizer, scheduler, 0, 4)
    old.save("last", model, tiny.state(4), optimizer, scheduler)
    tiny.train(None, model, optimizer, scheduler, 4, 5)
    old.save("epoch1", model, {**tiny.state(3), "epoch": 1, "iteration": 0}, optimizer, scheduler)
    point = checkpoint.find_resume_point(storage, tiny.SLUG, lambda m: None, folder)
    assert point is not None and point.key.endswith("tiny-last")
    point.close()
    storage.rm(f"{folder}/tiny-epoch1", recursive=True)
    new = checkpoint.Checkpointer(storage, folder, tiny.SLUG, publisher)
    new.save_step(6, model, tiny.state(6), optimizer, scheduler, None)
    assert checkpoint.checkpoint_keys(storage, tiny.SLUG, folder) == [f"{folder}/tiny-step6"]
