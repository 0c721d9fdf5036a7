"""checkpoint.keep after a finished run: what stays, what goes, -best as a pointer (local and S3 roots).

The fast tests build a finished run's checkpoints from a tiny torch model with
the real Checkpointer; the slow ones train the real MiniLM through the CLI.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_model

from multitype.storage import Storage
from multitype.transformer import checkpoint
from multitype.uploader import FolderPublisher
from tests.conftest import write_configs
from tests.transformer.conftest import train_args, transformer_yaml, write_processed
from tests.transformer.tiny_checkpoints import SLUG, make_model, state, train_step

FOLDER = "models/checkpoints"
FINAL = f"models/final/{SLUG}"
RESUME_ONLY = {"optimizer.pt", "scheduler.pt", "scaler.pt", "rng.pt", "rng.json"}


def finished_run(storage: Storage) -> torch.nn.Module:
    """A finished 6-step, 2-epoch run: -step2, -epoch1 (step 3), -step4, -epoch2 (step 6), -best (step 6), final."""
    model, optimizer, scheduler = make_model()
    saver = checkpoint.Checkpointer(storage, FOLDER, SLUG, FolderPublisher(storage, background=False),
                                    keep_steps=2, keep_epochs=2)
    for step in range(1, 7):
        train_step(model, optimizer, scheduler, step)
        if step in (2, 4):
            saver.save_step(step, model, state(step), optimizer, scheduler, None)
        if step in (3, 6):
            saver.save(f"epoch{step // 3}", model, {**state(step), "epoch": step // 3, "iteration": 0},
                       optimizer, scheduler, None)
    saver.save("best", model, state(6))
    with tempfile.TemporaryDirectory() as tmp:
        save_model(model, f"{tmp}/model.safetensors")
        (Path(tmp) / "config.json").write_text("{}", encoding="utf-8")
        storage.put_dir(tmp, FINAL)
    return model


def files(storage: Storage, tag: str) -> set[str]:
    key = f"{FOLDER}/{SLUG}-{tag}"
    return {rel[len(key) + 1:] for rel in storage.walk_files(key)}


def sizes(storage: Storage, prefix: str) -> int:
    return sum(int(info["size"]) for info in storage.walk_files(prefix).values())


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Storage:
    if request.param == "local":
        return Storage(str(tmp_path / "root"))
    server = request.getfixturevalue("s3_server")
    for var, value in server.env.items():
        monkeypatch.setenv(var, value)
    return Storage(f"s3://{server.make_bucket('lean')}/proj", endpoint_url=server.endpoint_url)


def test_keep_last_leaves_one_resume_point_weights_only_epochs_and_a_best_pointer(storage: Storage) -> None:
    model = finished_run(storage)
    before = sizes(storage, FOLDER)
    weights = int(storage.walk_files(f"{FINAL}/model.safetensors")[f"{FINAL}/model.safetensors"]["size"])

    done = checkpoint.tidy_finished(storage, SLUG, "last", FINAL, FOLDER)

    assert done == {"removed": [f"{FOLDER}/{SLUG}-step2", f"{FOLDER}/{SLUG}-step4"],
                    "stripped": [f"{FOLDER}/{SLUG}-epoch1"], "pointer": [f"{FOLDER}/{SLUG}-best"]}
    assert sorted(checkpoint.checkpoint_keys(storage, SLUG, FOLDER)) == [
        f"{FOLDER}/{SLUG}-{t}" for t in ("best", "epoch1", "epoch2")]
    assert files(storage, "epoch2") >= RESUME_ONLY | {"model.safetensors"}      # the newest: whole
    assert files(storage, "epoch1") == {"model.safetensors", "state.json", "checksums.json", "_COMPLETE"}
    assert files(storage, "best") == {"final.json", "state.json", "checksums.json", "_COMPLETE"}
    # what is left: two sets of weights and one resume state, no copy of the final model
    after = sizes(storage, FOLDER)
    full = sizes(storage, f"{FOLDER}/{SLUG}-epoch2")
    assert after < full + weights + 4096 < before
    assert sizes(storage, f"{FOLDER}/{SLUG}-best") < 4096

    # the newest still resumes; the stripped epoch is valid as weights, refused as a resume point
    point = checkpoint.find_resume_point(storage, SLUG, warn=pytest.fail, folder=FOLDER)
    assert point is not None and point.key.endswith("-epoch2") and point.state["global_step"] == 6
    point.close()
    with pytest.raises(checkpoint.InvalidCheckpoint, match="weights only: its resume state was dropped"):
        checkpoint.open_checkpoint(storage, f"{FOLDER}/{SLUG}-epoch1")
    checkpoint.open_checkpoint(storage, f"{FOLDER}/{SLUG}-epoch1", checkpoint.WEIGHT_FILES).close()

    # -best reads the final model's weights through the pointer
    best = checkpoint.open_checkpoint(storage, f"{FOLDER}/{SLUG}-best", checkpoint.WEIGHT_FILES)
    fresh, _, _ = make_model()
    best.load_weights(fresh)
    best.close()
    for a, b in zip(fresh.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)

    # a second tidy (a rerun that resumed the finished run) changes nothing
    assert checkpoint.tidy_finished(storage, SLUG, "last", FINAL, FOLDER) == {
        "removed": [], "stripped": [], "pointer": [f"{FOLDER}/{SLUG}-best"]}


def test_keep_all_keeps_every_resume_state_and_none_keeps_only_the_final_model(tmp_path: Path) -> None:
    storage = Storage(str(tmp_path / "root"))
    finished_run(storage)
    done = checkpoint.tidy_finished(storage, SLUG, "all", FINAL, FOLDER)
    assert done == {"removed": [], "stripped": [], "pointer": [f"{FOLDER}/{SLUG}-best"]}
    for tag in ("step2", "step4", "epoch1", "epoch2"):
        assert files(storage, tag) >= RESUME_ONLY, tag

    done = checkpoint.tidy_finished(storage, SLUG, "none", FINAL, FOLDER)
    assert len(done["removed"]) == 5
    assert checkpoint.checkpoint_keys(storage, SLUG, FOLDER) == []
    assert storage.exists(f"{FINAL}/model.safetensors")


@pytest.mark.parametrize("how", ["replaced", "gone"])
def test_a_best_pointer_without_its_final_model_reads_the_epoch_with_the_same_weights_else_is_refused(
        tmp_path: Path, how: str) -> None:
    """Checkpoints copied without models/final, or a final model replaced since: -epoch2 (the best epoch) has
    the very weights file -best held; once that is gone too, -best is refused with the reason."""
    storage = Storage(str(tmp_path / "root"))
    model = finished_run(storage)
    checkpoint.tidy_finished(storage, SLUG, "last", FINAL, FOLDER)
    if how == "gone":
        storage.rm(FINAL, recursive=True)
    else:
        other, _, _ = make_model()
        with tempfile.TemporaryDirectory() as tmp:
            save_model(other, f"{tmp}/model.safetensors")
            storage.put_dir(tmp, FINAL)
    best = checkpoint.open_checkpoint(storage, f"{FOLDER}/{SLUG}-best", checkpoint.WEIGHT_FILES)
    assert best.weights == storage.local_path(f"{FOLDER}/{SLUG}-epoch2/model.safetensors")
    fresh, _, _ = make_model()
    best.load_weights(fresh)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))

    checkpoint.remove(storage, f"{FOLDER}/{SLUG}-epoch2")
    reason = "is gone" if how == "gone" else "was replaced since (its weights do not match)"
    with pytest.raises(checkpoint.InvalidCheckpoint, match=rf"the final model it points to, .*/{FINAL}, "
                       rf"{re.escape(reason)}, and no other checkpoint holds the same weights"):
        checkpoint.open_checkpoint(storage, f"{FOLDER}/{SLUG}-best", checkpoint.WEIGHT_FILES)


def test_best_that_differs_from_the_final_model_is_kept_whole(tmp_path: Path) -> None:
    storage = Storage(str(tmp_path / "root"))
    finished_run(storage)
    other, _, _ = make_model()  # the untrained weights: not what -best holds
    with tempfile.TemporaryDirectory() as tmp:
        save_model(other, f"{tmp}/model.safetensors")
        storage.put_dir(tmp, FINAL)
    done = checkpoint.tidy_finished(storage, SLUG, "last", FINAL, FOLDER)
    assert done["pointer"] == [] and "model.safetensors" in files(storage, "best")


# -- the real loop ----------------------------------------------------------------------------------------
def _du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
def test_a_finished_run_keeps_what_checkpoint_keep_says_and_its_model_loads(trained, tmp_path: Path, cli) -> None:
    """keep: last on a real 2-epoch MiniLM run, against the same run with keep: all (the `trained` fixture)."""
    from transformers import AutoModelForSequenceClassification

    reference, _ = trained
    root = write_processed(tmp_path / "root")
    configs = write_configs(tmp_path / "configs", transformer=transformer_yaml(
        checkpoint={"every_steps": 2, "every_minutes": None, "keep_last_epochs": 2, "keep": "last"}))
    result = cli(*train_args(root, configs))
    assert result.exit_code == 0, result.stderr
    assert ("checkpoints (checkpoint.keep: last): 2 removed, 1 kept as weights only, minilm-best points to "
            f"{root}/models/final/minilm") in result.stderr

    ckpt = root / "models/checkpoints"
    assert sorted(p.name for p in ckpt.iterdir()) == ["minilm-best", "minilm-epoch1", "minilm-epoch2"]
    weights = (root / "models/final/minilm/model.safetensors").stat().st_size
    full = _du(ckpt / "minilm-epoch2")
    assert full > 2.5 * weights                                        # weights + AdamW's two moments
    assert abs(_du(ckpt / "minilm-epoch1") - weights) < 64 * 1024      # weights only
    assert _du(ckpt / "minilm-best") < 64 * 1024                       # a pointer
    before, after = _du(reference / "models"), _du(root / "models")
    assert after < before - 2 * full                                  # two resume points and a weights copy gone
    assert json.loads((ckpt / "minilm-best/final.json").read_text())["final"] == "models/final/minilm"

    model = AutoModelForSequenceClassification.from_pretrained(root / "models/final/minilm")
    assert model.config.id2label[0] == "business"

    again = cli(*train_args(root, configs))  # resumes the finished run: evaluates -best through the pointer
    assert again.exit_code == 0, again.stderr
    assert "resuming from" in again.stderr and "minilm-epoch2" in again.stderr and "warning" not in again.stderr
    a = json.loads((root / "results/transformer/minilm_metrics.json").read_text())
    b = json.loads((reference / "results/transformer/minilm_metrics.json").read_text())
    assert a["accuracy"] == b["accuracy"] and a["confusion_matrix"] == b["confusion_matrix"]
