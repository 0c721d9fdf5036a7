"""Training checkpoints: write, verify, find the newest valid one, restore.

A checkpoint is a folder ``<slug>-<tag>/`` in the checkpoint folder (by default
``<root>/models/checkpoints``) with tag ``step<N>`` (mid-epoch, N = global
step, the newest two kept), ``epoch<k>`` (end of epoch k, the newest
``keep_last_epochs`` kept) or ``best`` (weights only), holding::

    model.safetensors   weights
    optimizer.pt        optimizer state        (not in -best)
    scheduler.pt        LR scheduler state     (not in -best)
    scaler.pt           fp16 grad-scaler state (not in -best)
    rng.pt, rng.json    torch/CUDA and python/numpy RNG states (not in -best)
    state.json          position (epoch, iteration, global step), best score,
                        history, resolved params, labels, model name
    checksums.json      sha256 of every file above
    _COMPLETE           written last by the publisher

It is built in a local temp folder and published whole with
:class:`multitype.uploader.FolderPublisher`. A folder without the marker, with
a missing file or a checksum that does not match is not valid: resuming skips
it with a warning and tries the previous one. "Newest" is by the step numbers
in ``state.json``, never by file times.

One exception to the marker: a local checkpoint folder named in
``MULTITYPE_MARKERLESS_CHECKPOINT_DIR`` (SageMaker's ``/opt/ml/checkpoints``,
set by the entry point inside a job) is filled by a sync that copies files in
any order and knows nothing of our marker. There a folder without
``_COMPLETE`` is accepted when ``checksums.json`` lists every file resuming
needs and every listed file matches its sha256, so a partial folder is still
refused. Every other root keeps the marker rule.

Step checkpoints are never overwritten in place: each step has its own folder,
and :class:`Checkpointer` deletes an older one (marker first) only once a newer
one is complete, so a kill at any moment leaves a valid resume point no older
than one checkpoint interval. ``<slug>-last`` folders of earlier versions are
still resumed from (ordered by their ``state.json`` like the others) and are
deleted once a newer step checkpoint is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from multitype import layout
from multitype.errors import StorageError
from multitype.storage import COMPLETE_MARKER, Storage
from multitype.uploader import FolderPublisher

FORMAT = 1
WEIGHTS = "model.safetensors"
OPTIMIZER = "optimizer.pt"
SCHEDULER = "scheduler.pt"
SCALER = "scaler.pt"
RNG_TORCH = "rng.pt"
RNG_PY = "rng.json"
STATE = "state.json"
CHECKSUMS = "checksums.json"
RESUME_FILES = (WEIGHTS, OPTIMIZER, SCHEDULER, SCALER, RNG_TORCH, RNG_PY, STATE)
WEIGHT_FILES = (WEIGHTS, STATE)
RESUME_ONLY = (OPTIMIZER, SCHEDULER, SCALER, RNG_TORCH, RNG_PY)
# in a -best that points at the final model instead of holding a copy of its weights (see tidy_finished)
POINTER = "final.json"
# a local folder (or several, joined by os.pathsep) whose checkpoints may lack the marker (see above)
MARKERLESS_DIR_ENV = "MULTITYPE_MARKERLESS_CHECKPOINT_DIR"


class InvalidCheckpoint(Exception):
    """A checkpoint folder that cannot be used (the message says why)."""


# -- RNG states ------------------------------------------------------------------
def rng_states() -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON-able python/numpy states, torch states) of this process."""
    py = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    plain = {"python": [py[0], list(py[1]), py[2]],
             "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    tensors = {"torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    return plain, tensors


def restore_rng(plain: dict[str, Any], tensors: dict[str, Any]) -> None:
    """Put back the states captured by :func:`rng_states`."""
    version, keys, gauss = plain["python"]
    random.setstate((version, tuple(keys), gauss))
    kind, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    if tensors.get("cuda") and torch.cuda.is_available() and len(tensors["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(tensors["cuda"])


# -- writing ---------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_folder(folder: Path, model: torch.nn.Module, state: dict[str, Any],
                  optimizer: torch.optim.Optimizer | None, scheduler: Any, scaler: Any) -> None:
    from safetensors.torch import save_model

    save_model(model, str(folder / WEIGHTS))
    if optimizer is not None:
        torch.save(optimizer.state_dict(), folder / OPTIMIZER)
        torch.save(scheduler.state_dict(), folder / SCHEDULER)
        torch.save(scaler.state_dict() if scaler is not None else {}, folder / SCALER)
        plain, tensors = rng_states()
        torch.save(tensors, folder / RNG_TORCH)
        (folder / RNG_PY).write_text(json.dumps(plain), encoding="utf-8")
    (folder / STATE).write_text(json.dumps({"format": FORMAT, **state}, indent=2, default=str), encoding="utf-8")
    sums = {p.name: _sha256(p) for p in sorted(folder.iterdir()) if p.is_file()}
    (folder / CHECKSUMS).write_text(json.dumps({"sha256": sums}, indent=2), encoding="utf-8")


def save_checkpoint(publisher: FolderPublisher, key: str, model: torch.nn.Module, state: dict[str, Any],
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None, scaler: Any = None,
                    on_done: Callable[[str], None] | None = None) -> None:
    """Write a checkpoint to a local temp folder and hand it to ``publisher`` as ``key``.

    Without ``optimizer`` only the weights and ``state`` are kept (the ``-best``
    checkpoint); with it, everything needed to resume. ``on_done(key)`` runs
    once the folder is published.
    """
    folder = Path(tempfile.mkdtemp(prefix="multitype-ckpt-"))
    try:
        _write_folder(folder, model, state, optimizer, scheduler, scaler)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    publisher.publish(folder, key, on_done=on_done)


# -- reading ---------------------------------------------------------------------
def verify(folder: Path, required: tuple[str, ...] = RESUME_FILES, require_marker: bool = True) -> dict[str, Any]:
    """Check marker, files and checksums of a local checkpoint folder; return its state.

    Parameters
    ----------
    folder : Path
        The checkpoint folder.
    required : tuple of str, default=RESUME_FILES
        Files that ``checksums.json`` must list.
    require_marker : bool, default=True
        False: a folder without ``_COMPLETE`` passes when every file listed in
        ``checksums.json`` (which must list ``required``) is there and matches.

    Raises
    ------
    InvalidCheckpoint
        With the reason (no marker, missing file, checksum mismatch, bad JSON).
    """
    if require_marker and not (folder / COMPLETE_MARKER).exists():
        raise InvalidCheckpoint(f"no {COMPLETE_MARKER} marker (the save did not finish)")
    try:
        sums = json.loads((folder / CHECKSUMS).read_text(encoding="utf-8"))["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidCheckpoint(f"{CHECKSUMS} unreadable ({type(exc).__name__})") from None
    if WEIGHTS in required and WEIGHTS not in sums and POINTER in sums:
        required = tuple(POINTER if name == WEIGHTS else name for name in required)
    for name in required:
        if name not in sums:
            if name in RESUME_ONLY and WEIGHTS in sums and not any(n in sums for n in RESUME_ONLY):
                raise InvalidCheckpoint("weights only: its resume state was dropped when the run finished "
                                        "(checkpoint.keep)")
            raise InvalidCheckpoint(f"{name} missing")
    for name, expected in sums.items():
        path = folder / name
        if not path.is_file():
            raise InvalidCheckpoint(f"{name} missing")
        if _sha256(path) != expected:
            raise InvalidCheckpoint(f"{name} does not match its checksum (damaged)")
    try:
        return json.loads((folder / STATE).read_text(encoding="utf-8"))
    except ValueError:
        raise InvalidCheckpoint(f"{STATE} is not valid JSON") from None


@dataclass
class LocalCheckpoint:
    """A verified checkpoint on the local disk (a temp copy for S3 roots)."""

    key: str
    folder: Path
    state: dict[str, Any]
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)
    weights: Path | None = None    # the final model's weights, for a -best that points at them

    def load_weights(self, model: torch.nn.Module) -> None:
        from safetensors.torch import load_model

        load_model(model, str(self.weights or self.folder / WEIGHTS), strict=True)

    def load_training_state(self, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any) -> None:
        """Optimizer, scheduler, grad-scaler and RNG states (call after the model is built)."""
        optimizer.load_state_dict(torch.load(self.folder / OPTIMIZER, weights_only=True))
        scheduler.load_state_dict(torch.load(self.folder / SCHEDULER, weights_only=True))
        scaler_state = torch.load(self.folder / SCALER, weights_only=True)
        if scaler is not None and scaler_state:
            scaler.load_state_dict(scaler_state)
        restore_rng(json.loads((self.folder / RNG_PY).read_text(encoding="utf-8")),
                    torch.load(self.folder / RNG_TORCH, weights_only=True))

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def markerless(folder: Path, environ: Mapping[str, str] | None = None) -> bool:
    """True when ``folder`` lies in a checkpoint folder named in ``MULTITYPE_MARKERLESS_CHECKPOINT_DIR``."""
    value = (os.environ if environ is None else environ).get(MARKERLESS_DIR_ENV, "")
    here = folder.resolve()
    return any(here.is_relative_to(Path(place).resolve()) for place in value.split(os.pathsep) if place)


def open_checkpoint(storage: Storage, key: str, required: tuple[str, ...] = RESUME_FILES) -> LocalCheckpoint:
    """Verify the checkpoint ``key`` and return it on the local disk.

    The marker is required, except in a local folder named in
    ``MULTITYPE_MARKERLESS_CHECKPOINT_DIR`` (see :func:`markerless`).
    """
    tmp = None
    if storage.remote:
        tmp = tempfile.TemporaryDirectory(prefix="multitype-ckpt-")
        try:
            folder = storage.get_dir(key, tmp.name)
        except (OSError, StorageError) as exc:
            tmp.cleanup()
            raise InvalidCheckpoint(f"cannot download ({exc})") from None
    else:
        folder = storage.local_path(key)
    try:
        state = verify(folder, required, require_marker=storage.remote or not markerless(folder))
        weights = _pointed_weights(storage, key, folder, tmp) if (folder / POINTER).is_file() else None
    except InvalidCheckpoint:
        if tmp is not None:
            tmp.cleanup()
        raise
    return LocalCheckpoint(key, folder, state, tmp, weights)


def _pointed_weights(storage: Storage, key: str, folder: Path, tmp: tempfile.TemporaryDirectory[str] | None) -> Path:
    """The weights a pointer ``-best`` stands for, checked against the sha256 it recorded.

    The final model's ``model.safetensors`` first; where that is gone or was
    replaced (checkpoints copied to another root without ``models/final``), a
    checkpoint of the same model whose weights file is byte for byte the one
    ``-best`` held (the epoch checkpoint of the best epoch), else InvalidCheckpoint.
    """
    pointer = json.loads((folder / POINTER).read_text(encoding="utf-8"))
    try:
        return _fetch_checked(storage, f"{pointer['final']}/{WEIGHTS}", pointer["sha256"], tmp, "final")
    except InvalidCheckpoint as exc:
        problem = exc
    where, name = key.rsplit("/", 1) if "/" in key else ("", key)
    for tag, other in sorted(_tags(storage, name.removesuffix("-best"), where).items()):
        if tag == "best" or not pointer.get("weights_sha256"):
            continue
        try:
            sums = storage.read_json(f"{other}/{CHECKSUMS}")["sha256"]
            if sums.get(WEIGHTS) == pointer["weights_sha256"] and storage.is_complete(other):
                return _fetch_checked(storage, f"{other}/{WEIGHTS}", pointer["weights_sha256"], tmp, tag)
        except (StorageError, KeyError, TypeError, ValueError, InvalidCheckpoint):
            continue
    final = storage.url(pointer["final"])
    raise InvalidCheckpoint(f"the final model it points to, {final}, {problem}, and no other checkpoint holds "
                            f"the same weights") from None


def _fetch_checked(storage: Storage, key: str, sha256: str, tmp: tempfile.TemporaryDirectory[str] | None,
                   name: str) -> Path:
    """``key`` as a local file (downloaded into ``tmp`` for remote roots) whose sha256 is ``sha256``."""
    try:
        if storage.remote:
            assert tmp is not None
            local = Path(tmp.name) / f"pointed-{name}" / WEIGHTS
            local.parent.mkdir(parents=True, exist_ok=True)
            storage.get_file(key, local)
        else:
            local = storage.local_path(key)
        if not local.is_file():
            raise InvalidCheckpoint("is gone")
    except (OSError, StorageError):
        raise InvalidCheckpoint("cannot be read") from None
    if _sha256(local) != sha256:
        raise InvalidCheckpoint("was replaced since (its weights do not match)")
    return local


_TAG = r"(last|best|epoch\d+|step\d+)"


def _tags(storage: Storage, slug: str, folder: str = layout.CHECKPOINTS) -> dict[str, str]:
    """Checkpoint tag -> key for every folder of ``slug`` that holds a file (hidden staging folders excluded).

    Built from one listing of the files, not of the folders: a folder whose
    files were all deleted is gone (some S3 servers keep listing it as a prefix).
    """
    pattern = re.compile(rf"{re.escape(slug)}-{_TAG}")
    start = len(folder) + 1 if folder else 0
    found = {}
    for rel in storage.walk_files(folder):
        name = rel[start:].split("/", 1)[0]
        match = pattern.fullmatch(name)
        if match:
            found[match.group(1)] = layout.checkpoint(slug, match.group(1), folder)
    return found


def checkpoint_keys(storage: Storage, slug: str, folder: str = layout.CHECKPOINTS) -> list[str]:
    """Every checkpoint folder of ``slug`` in the checkpoint folder ``folder`` (a key under ``storage``)."""
    return sorted(_tags(storage, slug, folder).values())


def _position(state: dict[str, Any]) -> tuple[int, int, int]:
    return int(state["global_step"]), int(state["epoch"]), int(state["iteration"])


def find_resume_point(storage: Storage, slug: str, warn: Callable[[str], None],
                      folder: str = layout.CHECKPOINTS) -> LocalCheckpoint | None:
    """The newest valid resumable checkpoint (``-step<N>``, ``-epoch<k>``, an old ``-last``) of ``slug``, or None.

    Candidates are ordered by the global step (then epoch, iteration) written in
    their ``state.json``; incomplete or damaged ones are reported through
    ``warn`` and skipped.
    """
    candidates: list[tuple[tuple[int, int, int], str]] = []
    for tag, key in _tags(storage, slug, folder).items():
        if tag == "best":
            continue
        try:
            state = storage.read_json(f"{key}/{STATE}")
            candidates.append((_position(state), key))
        except (StorageError, KeyError, TypeError, ValueError):
            warn(f"checkpoint {storage.url(key)} skipped: {STATE} missing or unreadable "
                 f"(an unfinished or damaged save)")
    for _, key in sorted(candidates, reverse=True):
        try:
            return open_checkpoint(storage, key)
        except InvalidCheckpoint as exc:
            warn(f"checkpoint {storage.url(key)} skipped: {exc}")
    return None


def epoch_number(key: str) -> int | None:
    match = re.search(r"-epoch(\d+)$", key)
    return int(match.group(1)) if match else None


def step_number(key: str) -> int | None:
    match = re.search(r"-step(\d+)$", key)
    return int(match.group(1)) if match else None


def remove(storage: Storage, key: str) -> None:
    """Delete a checkpoint folder, its marker first: a deletion cut short leaves an incomplete folder."""
    storage.rm(f"{key}/{COMPLETE_MARKER}")
    storage.rm(key, recursive=True)


def prune_epochs(storage: Storage, slug: str, keep: int, folder: str = layout.CHECKPOINTS) -> list[str]:
    """Delete all but the ``keep`` highest-numbered ``-epoch<k>`` checkpoints; return what went."""
    epochs = sorted((n, key) for key in checkpoint_keys(storage, slug, folder) if (n := epoch_number(key)) is not None)
    doomed = [key for _, key in epochs[:-keep]] if keep > 0 else [key for _, key in epochs]
    for key in doomed:
        remove(storage, key)
    return doomed


def prune_steps(storage: Storage, slug: str, done: int, keep: int, folder: str = layout.CHECKPOINTS) -> list[str]:
    """After ``-step<done>`` is complete: keep it and the ``keep - 1`` newest older ones; delete the rest.

    Older means a lower step number; a higher-numbered folder is never touched
    (it can only be an unfinished save that a later save of that step replaces).
    An old-style ``-last`` goes too: the new step checkpoint supersedes it.
    """
    older = sorted((n, key) for key in checkpoint_keys(storage, slug, folder)
                   if (n := step_number(key)) is not None and n < done)
    doomed = [key for _, key in older[:max(len(older) - (keep - 1), 0)]]
    last = layout.checkpoint(slug, "last", folder)
    if last in checkpoint_keys(storage, slug, folder):
        doomed.append(last)
    for key in doomed:
        remove(storage, key)
    return doomed


# -- after a run finished -----------------------------------------------------------
def strip_resume_state(storage: Storage, key: str) -> list[str]:
    """Drop the resume-only files (optimizer, scheduler, scaler, RNG) of the complete checkpoint ``key``.

    ``checksums.json`` is rewritten first (one atomic write) and the files go
    after, so the folder is valid at every moment: first as it was, then as a
    weights-only checkpoint (a file not in ``checksums.json`` is not read).
    """
    sums = storage.read_json(f"{key}/{CHECKSUMS}")["sha256"]
    dropped = [name for name in RESUME_ONLY if name in sums]
    if dropped:
        storage.write_json(f"{key}/{CHECKSUMS}", {"sha256": {k: v for k, v in sums.items() if k not in dropped}})
        storage.rm_files([f"{key}/{name}" for name in dropped])
    return dropped


def point_best_at_final(storage: Storage, key: str, final_key: str) -> bool:
    """Replace the weights of ``-best`` by a pointer to the final model folder (same storage); False if they differ.

    The final model is saved from the ``-best`` weights, so its ``model.safetensors``
    holds the same tensors; the pointer records that file's sha256 and a reader
    (:func:`open_checkpoint`) refuses it once the final model is replaced. The
    new folder is published whole (marker last) like any checkpoint.
    """
    best = open_checkpoint(storage, key, WEIGHT_FILES)
    try:
        if best.weights is not None:
            return True  # a pointer already
        from safetensors.torch import load_file

        final = Path(tempfile.mkdtemp(prefix="multitype-final-"))
        try:
            if storage.remote:
                storage.get_file(f"{final_key}/{WEIGHTS}", final / WEIGHTS)
            else:
                final = storage.local_path(final_key)
            mine, theirs = load_file(str(best.folder / WEIGHTS)), load_file(str(final / WEIGHTS))
            if mine.keys() != theirs.keys() or any(not torch.equal(mine[k], theirs[k]) for k in mine):
                return False
            digest = _sha256(final / WEIGHTS)
        finally:
            if storage.remote:
                shutil.rmtree(final, ignore_errors=True)
        folder = Path(tempfile.mkdtemp(prefix="multitype-ckpt-"))
        try:
            shutil.copy2(best.folder / STATE, folder / STATE)
            pointer = {"final": final_key, "sha256": digest,
                       "weights_sha256": _sha256(best.folder / WEIGHTS)}  # the file it held: an epoch twin has it
            (folder / POINTER).write_text(json.dumps(pointer, indent=2), encoding="utf-8")
            sums = {p.name: _sha256(p) for p in sorted(folder.iterdir())}
            (folder / CHECKSUMS).write_text(json.dumps({"sha256": sums}, indent=2), encoding="utf-8")
            storage.put_dir(folder, key)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return True
    finally:
        best.close()


def tidy_finished(storage: Storage, slug: str, keep: str, final_key: str | None,
                  folder: str = layout.CHECKPOINTS) -> dict[str, list[str]]:
    """Make a finished run's checkpoints lean (``checkpoint.keep``); call only after the final model is saved.

    - ``all``: every checkpoint stays whole.
    - ``last``: the newest resumable checkpoint (highest global step) stays whole;
      older ``-epoch<k>`` keep their weights and lose their resume state
      (:func:`strip_resume_state`); older ``-step<N>`` (mid-epoch points of a run
      that is over) are removed.
    - ``none``: every checkpoint of ``slug`` is removed (the final model is the result).

    With ``final_key`` (the final model on the same storage), ``-best`` becomes a
    pointer to it (:func:`point_best_at_final`) in ``all`` and ``last``.

    Returns
    -------
    dict
        ``{"removed": [...], "stripped": [...], "pointer": [...]}`` keys.
    """
    done: dict[str, list[str]] = {"removed": [], "stripped": [], "pointer": []}
    tags = _tags(storage, slug, folder)
    if keep == "none":
        for key in sorted(tags.values()):
            remove(storage, key)
            done["removed"].append(key)
        return done
    if final_key is not None and "best" in tags:
        if point_best_at_final(storage, tags["best"], final_key):
            done["pointer"].append(tags["best"])
    if keep == "all":
        return done
    positions = {}
    for tag, key in tags.items():
        if tag != "best":
            try:
                positions[key] = _position(storage.read_json(f"{key}/{STATE}"))
            except (StorageError, KeyError, TypeError, ValueError):
                positions[key] = (-1, -1, -1)  # unreadable: never the newest
    if not positions:
        return done
    newest = max(positions, key=lambda k: positions[k])
    for key in sorted(positions):
        if key == newest:
            continue
        if epoch_number(key) is not None and positions[key] >= (0, 0, 0):
            if strip_resume_state(storage, key):
                done["stripped"].append(key)
        else:
            remove(storage, key)
            done["removed"].append(key)
    return done


class Checkpointer:
    """Names, publishes and prunes one model's checkpoints in one checkpoint folder.

    Parameters
    ----------
    storage : Storage
        Where the checkpoint folder is.
    folder : str
        The checkpoint folder's key under ``storage`` (``""``: its root).
    slug : str
        The model's artifact name.
    publisher : FolderPublisher
        Publishes each finished folder (marker last); ``on_done`` prunes.
    keep_steps : int, default=2
        Step checkpoints kept (the newest by step number).
    keep_epochs : int, default=2
        Epoch checkpoints kept.
    replace_others : bool, default=False
        A fresh run: once its first checkpoint is complete, the checkpoints
        of ``slug`` it did not write (an earlier run's) are deleted.
    """

    def __init__(self, storage: Storage, folder: str, slug: str, publisher: FolderPublisher, keep_steps: int = 2,
                 keep_epochs: int = 2, replace_others: bool = False) -> None:
        self.storage, self.folder, self.slug, self.publisher = storage, folder, slug, publisher
        self.keep_steps, self.keep_epochs = max(keep_steps, 1), keep_epochs
        self.replace_others = replace_others
        self.written: set[str] = set()
        self.last_step: int | None = None  # global step of the newest resumable checkpoint handed over

    def key(self, tag: str) -> str:
        return layout.checkpoint(self.slug, tag, self.folder)

    def save(self, tag: str, model: torch.nn.Module, state: dict[str, Any], optimizer: Any = None,
             scheduler: Any = None, scaler: Any = None) -> str:
        """Write ``<slug>-<tag>`` (see :func:`save_checkpoint`) and return its key."""
        key = self.key(tag)
        self.written.add(key)
        if optimizer is not None:
            self.last_step = int(state["global_step"])
        save_checkpoint(self.publisher, key, model, state, optimizer, scheduler, scaler, on_done=self._published)
        return key

    def save_step(self, global_step: int, model: torch.nn.Module, state: dict[str, Any], optimizer: Any,
                  scheduler: Any, scaler: Any) -> str | None:
        """A ``-step<N>`` checkpoint, unless one of this step was already handed over (None then)."""
        if self.last_step == global_step:
            return None
        return self.save(layout.step_tag(global_step), model, state, optimizer, scheduler, scaler)

    def _published(self, key: str) -> None:
        if self.replace_others:  # a fresh run's first complete checkpoint replaces the previous run's
            self.replace_others = False
            for other in checkpoint_keys(self.storage, self.slug, self.folder):
                if other not in self.written:
                    remove(self.storage, other)
        if (step := step_number(key)) is not None:
            prune_steps(self.storage, self.slug, step, self.keep_steps, self.folder)
        elif epoch_number(key) is not None:
            prune_epochs(self.storage, self.slug, self.keep_epochs, self.folder)
