"""Interruptions: SIGKILL and SIGTERM mid-run, then resume; damaged and foreign checkpoints."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from multitype.transformer import checkpoint
from multitype.transformer.models import packaged_minilm
from tests.conftest import write_configs
from tests.transformer.conftest import SUBPROCESS_ENV, train_args, transformer_yaml, write_processed

pytestmark = pytest.mark.slow  # every test here trains the real MiniLM (or reads a run that did)

CKPT = "models/checkpoints"


def start_training(root: Path, configs: Path, stderr_path: Path) -> subprocess.Popen[bytes]:
    """The real CLI in a subprocess (one torch thread, like the in-process runs)."""
    return subprocess.Popen([sys.executable, "-m", "multitype", *train_args(root, configs)],
                            env={**os.environ, **SUBPROCESS_ENV}, stdout=subprocess.DEVNULL,
                            stderr=open(stderr_path, "wb"))


def wait_for(condition, proc: subprocess.Popen[bytes], what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"training exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.05)


def assert_same_result(root: Path, reference: Path) -> None:
    """Same final weights (float tolerance) and the same metrics as the uninterrupted run."""
    got = load_file(root / "models/final/minilm/model.safetensors")
    want = load_file(reference / "models/final/minilm/model.safetensors")
    assert got.keys() == want.keys()
    for name in want:
        assert torch.allclose(got[name], want[name], rtol=0, atol=1e-6), name
    a = json.loads((root / "results/transformer/minilm_metrics.json").read_text())
    b = json.loads((reference / "results/transformer/minilm_metrics.json").read_text())
    for key in ("accuracy", "macro_f1", "weighted_f1", "per_class", "confusion_matrix", "global_step", "best_epoch"):
        assert a[key] == b[key], key
    assert a["splits"]["val"] == b["splits"]["val"]
    for x, y in zip(a["history"], b["history"], strict=True):
        assert abs(x["train_loss"] - y["train_loss"]) < 1e-5 and x["val_macro_f1"] == y["val_macro_f1"]


def link_checkpoints(src_root: Path, dest_root: Path, tags: tuple[str, ...]) -> None:
    """Hard-link some checkpoints of a finished run into another root (instant, read-only use)."""
    for tag in tags:
        shutil.copytree(src_root / CKPT / f"minilm-{tag}", dest_root / CKPT / f"minilm-{tag}", copy_function=os.link)


def damage(path: Path) -> None:
    """Flip bytes in the middle of a (hard-linked) file without touching the original."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 16] = bytes(b ^ 0xFF for b in data[len(data) // 2: len(data) // 2 + 16])
    path.unlink()
    path.write_bytes(bytes(data))


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_sigkill_at_any_step_then_resume_is_exact(trained, tmp_path: Path, cli) -> None:
    reference, configs = trained
    root = write_processed(tmp_path / "root")
    last = root / CKPT / "minilm-step2"
    proc = start_training(root, configs, tmp_path / "killed.err")
    try:
        wait_for(lambda: (last / "_COMPLETE").exists(), proc, "step checkpoint")
    finally:
        proc.kill()  # mid-step 3: no chance to save anything
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((last / "state.json").read_text())["global_step"] == 2

    result = cli(*train_args(root, configs))
    assert result.exit_code == 0, result.stderr
    assert "resuming from" in result.stderr
    assert_same_result(root, reference)


def test_sigterm_saves_a_checkpoint_exits_143_and_resumes_exactly(trained, tmp_path: Path, cli) -> None:
    reference, _ = trained
    root = write_processed(tmp_path / "root")
    # no periodic checkpoints: the only `-step<N>` is the one SIGTERM asks for
    configs = write_configs(tmp_path / "configs", transformer=transformer_yaml(
        checkpoint={"every_steps": None, "every_minutes": None, "keep_last_epochs": 2}))
    err = tmp_path / "term.err"
    proc = start_training(root, configs, err)
    try:
        wait_for(lambda: "training minilm on" in err.read_text(errors="replace"), proc, "training start")
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        proc.wait(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = err.read_text(errors="replace")
    assert proc.returncode == 143, stderr
    assert elapsed < 30
    assert "SIGTERM" in stderr and "checkpoint saved" in stderr and "Traceback" not in stderr
    [saved] = (root / CKPT).glob("minilm-step*")
    state = checkpoint.verify(saved)
    assert saved.name == f"minilm-step{state['global_step']}" and state["global_step"] < 6

    result = cli(*train_args(root, configs))
    assert result.exit_code == 0, result.stderr
    assert f"step {state['global_step']})" in result.stderr
    assert_same_result(root, reference)


def test_a_stop_during_the_final_evaluation_exits_143_and_the_rerun_evaluates(
        trained, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """A spot notice that lands after the last epoch (the final test-split pass) is an interruption like any
    other: exit 143, the finished last epoch checkpointed; the rerun trains nothing and evaluates."""
    from multitype import interrupts
    from multitype.transformer import train

    reference, configs = trained
    root = write_processed(tmp_path / "root")
    load_best = train._load_best

    def then_a_notice(run) -> None:
        load_best(run)
        interrupts.request_stop("a spot interruption notice")

    with monkeypatch.context() as m:
        m.setattr(train, "_load_best", then_a_notice)
        stopped = cli(*train_args(root, configs))
    assert stopped.exit_code == 143, stopped.stderr
    assert "during the final evaluation" in stopped.stderr and "Traceback" not in stopped.stderr
    assert not (root / "models/final/minilm").exists()
    assert json.loads((root / CKPT / "minilm-epoch2/state.json").read_text())["global_step"] == 6

    result = cli(*train_args(root, configs))
    assert result.exit_code == 0, result.stderr
    assert_same_result(root, reference)


def test_damaged_newest_checkpoint_is_skipped_for_the_previous_one(trained, tmp_path: Path, cli) -> None:
    reference, configs = trained
    root = write_processed(tmp_path / "root")
    link_checkpoints(reference, root, ("epoch2", "step4", "best"))
    damage(root / CKPT / "minilm-epoch2" / "model.safetensors")

    result = cli(*train_args(root, configs))
    assert result.exit_code == 0, result.stderr
    assert "minilm-epoch2 skipped: model.safetensors does not match its checksum" in result.stderr
    assert "minilm-step4 (epoch 2, step 4)" in result.stderr
    assert_same_result(root, reference)


def test_no_valid_checkpoint_starts_fresh_and_replaces_the_damaged_ones(trained, tmp_path: Path, cli) -> None:
    reference, configs = trained
    root = write_processed(tmp_path / "root")
    link_checkpoints(reference, root, ("epoch1", "epoch2", "step4"))
    (root / CKPT / "minilm-step4" / "_COMPLETE").unlink()              # an upload that never finished
    damage(root / CKPT / "minilm-epoch1" / "checksums.json")           # an unreadable manifest
    (root / CKPT / "minilm-epoch2" / "optimizer.pt").unlink()          # a missing file

    result = cli(*train_args(root, configs, "--max-steps", "1"))
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("skipped") == 3
    assert "no valid checkpoint of minilm to resume from: starting fresh" in result.stderr
    names = sorted(p.name for p in (root / CKPT).iterdir() if not p.name.startswith("."))
    assert names == ["minilm-best", "minilm-epoch1"]
    assert checkpoint.verify(root / CKPT / "minilm-epoch1")["global_step"] == 1


def test_checkpoint_with_other_labels_is_refused_and_kept(trained, tmp_path: Path, cli) -> None:
    reference, configs = trained
    root = write_processed(tmp_path / "root", classes=("business", "politics", "sports"))
    link_checkpoints(reference, root, ("epoch2", "best"))
    before = snapshot(root / CKPT)

    result = cli(*train_args(root, configs))
    assert result.exit_code == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: checkpoint ") and "minilm-epoch2" in line
    assert "labels ['business', 'politics', 'sports', 'tech']" in line and "--resume never" in line
    assert snapshot(root / CKPT) == before
    assert not (root / "models/final").exists() and not (root / "results").exists()


def test_checkpoint_of_another_model_is_refused_and_kept(trained, tmp_path: Path, cli) -> None:
    reference, configs = trained
    root = write_processed(tmp_path / "root")
    link_checkpoints(reference, root, ("epoch2", "best"))
    before = snapshot(root / CKPT)
    other = tmp_path / "models" / "minilm"  # a local folder whose slug is also `minilm`
    other.parent.mkdir()
    other.symlink_to(packaged_minilm(), target_is_directory=True)

    result = cli("train", "transformer", "--model-name", str(other), "--root", str(root), "--config-dir", str(configs))
    assert result.exit_code == 2
    assert "was trained from model 'minilm', not" in result.stderr and "--resume never" in result.stderr
    assert snapshot(root / CKPT) == before


def test_resume_never_starts_over_and_replaces_the_old_checkpoints(trained, tmp_path: Path, cli) -> None:
    reference, configs = trained
    root = write_processed(tmp_path / "root")
    link_checkpoints(reference, root, ("epoch1", "epoch2", "step2", "step4", "best"))
    result = cli(*train_args(root, configs, "--resume", "never", "--max-steps", "1"))
    assert result.exit_code == 0, result.stderr
    assert "resuming" not in result.stderr
    names = sorted(p.name for p in (root / CKPT).iterdir() if not p.name.startswith("."))
    assert names == ["minilm-best", "minilm-epoch1"]
    assert checkpoint.verify(root / CKPT / "minilm-epoch1")["global_step"] == 1
    assert json.loads((root / "results/transformer/minilm_metrics.json").read_text())["global_step"] == 1


def test_the_checkpoints_seed_and_settings_win_with_a_warning(trained, tmp_path: Path, cli) -> None:
    reference, _ = trained
    root = write_processed(tmp_path / "root")
    link_checkpoints(reference, root, ("epoch2", "best"))  # a finished run: resuming only re-evaluates
    configs = write_configs(tmp_path / "configs", transformer=transformer_yaml(batch_size=4, seed=7))
    result = cli(*train_args(root, configs, "--max-length", "32"))
    assert result.exit_code == 0, result.stderr
    assert "the checkpoint's seed 42 wins over 7" in result.stderr
    assert "the checkpoint's batch_size=8 wins over 4" in result.stderr
    assert "the checkpoint's max_length=64 wins over 32" in result.stderr
    record = json.loads((root / "results/transformer/minilm_metrics.json").read_text())
    assert record["seed"] == 42 and record["params"]["batch_size"] == 8 and record["params"]["max_length"] == 64
    assert record["accuracy"] == json.loads((reference / "results/transformer/minilm_metrics.json").read_text())["accuracy"]


@pytest.mark.parametrize("how", ["damaged", "missing"])
def test_a_damaged_or_missing_best_checkpoint_is_one_line_exit_2(trained, tmp_path: Path, cli, how: str) -> None:
    reference, configs = trained
    root = write_processed(tmp_path / "root")
    link_checkpoints(reference, root, ("epoch2", "best") if how == "damaged" else ("epoch2",))
    best = root / CKPT / "minilm-best"
    if how == "damaged":  # the finished reference run made -best a pointer to its final model (checkpoint.keep)
        damage(best / ("final.json" if (best / "final.json").exists() else "model.safetensors"))
    before = snapshot(root / CKPT)

    result = cli(*train_args(root, configs))
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: the best checkpoint {root}/{CKPT}/minilm-best ")
    assert ("does not match its checksum (damaged)" if how == "damaged" else "is missing") in line
    assert "--resume never" in line
    assert snapshot(root / CKPT) == before  # nothing lost
    assert not (root / "models/final").exists() and not (root / "results").exists()
