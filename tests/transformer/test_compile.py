"""``compile: auto|true|false``: compiled training keeps plain weights, loads uncompiled, resumes exactly."""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from multitype.config import TransformerParams
from multitype.predictor import load_predictor
from multitype.transformer import compiling
from multitype.transformer.models import load_classifier, resolve_model
from tests.conftest import write_configs
from tests.transformer.conftest import train_args, transformer_yaml, write_processed
from tests.transformer.test_resume import CKPT, assert_same_result, link_checkpoints, start_training, wait_for


def test_auto_compiles_nowhere_measured_slower_and_true_false_are_kept() -> None:
    cpu, warnings = torch.device("cpu"), []
    assert compiling.resolve_compile("auto", cpu, False, warnings.append) is False
    assert compiling.resolve_compile(True, cpu, False, warnings.append) is True
    assert compiling.resolve_compile(False, cpu, True, warnings.append) is False
    assert warnings == []
    assert compiling.resolve_compile(True, cpu, True, warnings.append) is True
    assert "gradient_checkpointing" in warnings[0]
    assert TransformerParams().compile == "auto"


def test_compiling_in_place_keeps_the_plain_state_dict_keys() -> None:
    model = load_classifier(resolve_model("minilm"), ["a", "b"])
    before = list(model.state_dict())
    assert compiling.compile_model(model, torch.device("cpu")) == 6  # minilm's six encoder layers, one graph shared
    assert list(model.state_dict()) == before and not any("_orig_mod" in key for key in before)


@pytest.fixture(scope="module")
def compiled_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A finished 2-epoch run with compile: true (6 steps, checkpoints every 2), and its configs."""
    from multitype.cli import main

    base = tmp_path_factory.mktemp("compiled")
    reference = write_processed(base / "reference")
    configs = write_configs(base / "configs", transformer=transformer_yaml(compile=True))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(train_args(reference, configs)) == 0
    finally:
        torch.set_num_threads(before)
    return reference, configs


@pytest.mark.slow  # compiles minilm's layers (20 s to a minute on 2 shared cores) and trains twice
def test_compiled_run_saves_plain_weights_predicts_uncompiled_and_resumes_exactly(compiled_run, tmp_path: Path,
                                                                                  cli) -> None:
    reference, _ = compiled_run
    record = json.loads((reference / "results/transformer/minilm_metrics.json").read_text())
    assert record["compiled"] is True

    # the saved weights have the plain keys: an uncompiled model and the predictor load them as they are
    final = reference / "models/final/minilm"
    plain = set(load_classifier(resolve_model("minilm"), record["labels"]).state_dict())
    assert set(load_file(final / "model.safetensors")) <= plain
    assert set(load_file(reference / CKPT / "minilm-step4" / "model.safetensors")) == plain
    with open(reference / "data/processed/test_4class.csv", newline="", encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    _, scores = load_predictor(final, device="cpu").predict(texts, batch_size=4)
    assert np.allclose(scores, record["predictions"]["probabilities"], atol=1e-4)

    # resumed mid-epoch 2 from the compiled run's step checkpoint, compiled again (--compile over the file's
    # false: compile may change between a run and its resume): the same weights and metrics as uninterrupted
    root = write_processed(tmp_path / "root")
    link_checkpoints(reference, root, ("step4", "best"))
    plain_configs = write_configs(tmp_path / "plain", transformer=transformer_yaml(compile=False))
    result = cli(*train_args(root, plain_configs, "--compile"))
    assert result.exit_code == 0, result.stderr
    assert "minilm-step4 (epoch 2, step 4)" in result.stderr and "compiled on cpu" in result.stderr
    assert_same_result(root, reference)


@pytest.mark.slow  # a compiled training subprocess killed mid-run, then resumed compiled
def test_sigkill_of_a_compiled_run_then_resume_is_exact(compiled_run, tmp_path: Path, cli) -> None:
    reference, configs = compiled_run
    root = write_processed(tmp_path / "root")
    last = root / CKPT / "minilm-step2"
    proc = start_training(root, configs, tmp_path / "killed.err")
    try:
        wait_for(lambda: (last / "_COMPLETE").exists(), proc, "step checkpoint")
    finally:
        proc.kill()  # mid-step 3: no chance to save anything
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert "fp32, compiled on cpu" in (tmp_path / "killed.err").read_text(errors="replace")

    result = cli(*train_args(root, configs))
    assert result.exit_code == 0, result.stderr
    assert "resuming from" in result.stderr and "compiled on cpu" in result.stderr
    assert_same_result(root, reference)
