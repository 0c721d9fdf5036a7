"""Bad hyperparameters, model names and data: exit 2 with one line naming the fix, before any weights load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.transformer.conftest import train_args


@pytest.mark.parametrize(("flags", "expected"), [
    (("--batch-size", "0"), "'batch_size' Input should be greater than 0, got 0"),
    (("--learning-rate", "-0.001"), "'learning_rate' Input should be greater than 0"),
    (("--num-epochs", "0"), "'num_epochs' Input should be greater than 0"),
    (("--max-length", "1000"), "--max-length 1000 is above the limit of model 'minilm' (512 tokens"),
    (("--precision", "fp64"), "'precision' Input should be 'auto', 'bf16', 'fp16' or 'fp32'"),
    (("--resume", "sometimes"), "--resume must be 'auto' or 'never'"),
])
def test_bad_hyperparameters_exit_2(tiny_project, cli, flags, expected) -> None:
    root, configs = tiny_project
    result = cli(*train_args(root, configs, *flags))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (root / "models").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is fine on a GPU")
def test_fp16_on_cpu_exit_2(tiny_project, cli) -> None:
    root, configs = tiny_project
    result = cli(*train_args(root, configs, "--precision", "fp16"))
    assert result.exit_code == 2 and "--precision fp16 needs a CUDA GPU" in result.stderr


@pytest.mark.parametrize(("name", "expected"), [
    ("no-such-org/no-such-model", "model 'no-such-org/no-such-model' is not a local folder and not in the Hugging "
                                  "Face cache, and the hub is offline"),
    ("./no/such/folder", "model folder './no/such/folder' has no config.json"),
])
def test_unknown_model_exit_2_suggests_minilm(tiny_project, cli, monkeypatch, name, expected) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root, configs = tiny_project
    result = cli("train", "transformer", "--model-name", name, "--root", root, "--config-dir", configs)
    assert result.exit_code == 2
    assert expected in result.stderr and "'minilm'" in result.stderr


def test_missing_processed_data_exit_2(tmp_path: Path, tiny_project, cli) -> None:
    _, configs = tiny_project
    result = cli(*train_args(tmp_path / "empty", configs))
    assert result.exit_code == 2 and "run 'multitype prepare' first" in result.stderr
