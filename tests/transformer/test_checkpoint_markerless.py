"""Checkpoints restored without their ``_COMPLETE`` marker (SageMaker's checkpoint sync): accepted only whole.

In a folder named in ``MULTITYPE_MARKERLESS_CHECKPOINT_DIR`` a checkpoint counts when
``checksums.json`` verifies every file; a cut, missing or unlisted file still
rejects it, and every other folder (local or S3) keeps requiring the marker.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from multitype.storage import COMPLETE_MARKER, Storage
from multitype.transformer import checkpoint
from multitype.uploader import FolderPublisher
from tests.transformer import tiny_checkpoints as tiny


def _saved(folder: Path, steps: int = 4) -> Storage:
    """``tiny-step2`` and ``tiny-step4`` in ``folder``, then every marker removed (as SageMaker restores them)."""
    storage = Storage(str(folder))
    model, optimizer, scheduler = tiny.make_model()
    checkpointer = checkpoint.Checkpointer(storage, "", tiny.SLUG, FolderPublisher(storage, background=False))
    tiny.train(checkpointer, model, optimizer, scheduler, 0, steps)
    for marker in folder.glob(f"*/{COMPLETE_MARKER}"):
        marker.unlink()
    return storage


def _resume_key(storage: Storage) -> tuple[str | None, list[str]]:
    warnings: list[str] = []
    point = checkpoint.find_resume_point(storage, tiny.SLUG, warnings.append, "")
    if point is None:
        return None, warnings
    point.close()
    return point.key, warnings


def test_markerless_folder_resumes_only_where_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = _saved(tmp_path / "checkpoints")
    monkeypatch.delenv(checkpoint.MARKERLESS_DIR_ENV, raising=False)
    key, warnings = _resume_key(storage)
    assert key is None and all("no _COMPLETE marker" in w for w in warnings) and len(warnings) == 2

    monkeypatch.setenv(checkpoint.MARKERLESS_DIR_ENV, str(tmp_path / "elsewhere"))
    assert _resume_key(storage)[0] is None  # another folder is named: the marker rule stays

    monkeypatch.setenv(checkpoint.MARKERLESS_DIR_ENV, str(tmp_path / "checkpoints"))
    key, warnings = _resume_key(storage)
    assert key == "tiny-step4" and warnings == []
    # and it resumes exactly: step 4's states continue to the uninterrupted weights
    point = checkpoint.find_resume_point(storage, tiny.SLUG, print, "")
    model, optimizer, scheduler = tiny.make_model()
    point.load_weights(model)
    point.load_training_state(optimizer, scheduler, None)
    point.close()
    tiny.train(None, model, optimizer, scheduler, 4, 6)
    want, opt, sched = tiny.make_model()
    tiny.train(None, want, opt, sched, 0, 6)
    for name, value in want.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


@pytest.mark.parametrize("damage", ["cut", "missing", "checksums-cut", "checksums-missing"])
def test_partial_markerless_folder_is_skipped_for_the_previous(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              damage: str) -> None:
    storage = _saved(tmp_path / "checkpoints")
    monkeypatch.setenv(checkpoint.MARKERLESS_DIR_ENV, str(tmp_path / "checkpoints"))
    newest = tmp_path / "checkpoints" / "tiny-step4"
    if damage == "cut":  # a file SageMaker had not finished copying
        data = (newest / checkpoint.OPTIMIZER).read_bytes()
        (newest / checkpoint.OPTIMIZER).write_bytes(data[: len(data) // 2])
    elif damage == "missing":
        (newest / checkpoint.RNG_TORCH).unlink()
    elif damage == "checksums-cut":
        text = (newest / checkpoint.CHECKSUMS).read_text()
        (newest / checkpoint.CHECKSUMS).write_text(text[: len(text) // 2])
    else:
        (newest / checkpoint.CHECKSUMS).unlink()
    key, warnings = _resume_key(storage)
    assert key == "tiny-step2"
    assert len(warnings) == 1 and "tiny-step4 skipped" in warnings[0], warnings


def test_checksums_must_list_the_resume_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checksums.json that verifies but lacks a file resuming needs is not a whole checkpoint."""
    import json

    storage = _saved(tmp_path / "checkpoints")
    monkeypatch.setenv(checkpoint.MARKERLESS_DIR_ENV, str(tmp_path / "checkpoints"))
    newest = tmp_path / "checkpoints" / "tiny-step4"
    sums = json.loads((newest / checkpoint.CHECKSUMS).read_text())
    del sums["sha256"][checkpoint.SCHEDULER]
    (newest / checkpoint.CHECKSUMS).write_text(json.dumps(sums))
    (newest / checkpoint.SCHEDULER).unlink()
    key, warnings = _resume_key(storage)
    assert key == "tiny-step2" and "scheduler.pt missing" in warnings[0]


def test_s3_checkpoints_keep_the_marker_rule(s3_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The variable names local folders only: an S3 folder without its marker is still incomplete."""
    local = _saved(tmp_path / "checkpoints")
    bucket = s3_server.make_bucket()
    remote = Storage(f"s3://{bucket}/ckpt")
    for folder in sorted((tmp_path / "checkpoints").iterdir()):
        if not folder.name.startswith("."):
            remote.put_dir(folder, folder.name, marker=False)
    monkeypatch.setenv(checkpoint.MARKERLESS_DIR_ENV, str(tmp_path / "checkpoints"))
    assert _resume_key(local)[0] == "tiny-step4"
    key, warnings = _resume_key(remote)
    assert key is None and len(warnings) == 2 and all("marker" in w for w in warnings)
