"""Where training writes (checkpoint folder, model folder, results root) and what identifies its model."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from multitype.project import CHECKPOINT_DIR_ENV, MODEL_DIR_ENV, RESULTS_ROOT_ENV, Outputs, Place, open_project
from multitype.storage import Storage
from multitype.transformer import artifacts, checkpoint, models
from multitype.transformer.models import ModelIdentity, model_identity, packaged_minilm, resolve_model, same_model
from tests.conftest import write_configs
from tests.transformer.conftest import transformer_yaml, write_processed

LABELS = ["business", "politics", "sports", "tech"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def link_tree(src: Path, dest: Path) -> Path:
    """A copy of a model folder made of hard links (instant; the files are only read)."""
    shutil.copytree(src, dest, copy_function=os.link)
    return dest


# -- model identity --------------------------------------------------------------------------------------------
def test_a_local_model_is_identified_by_its_files_not_its_path(tmp_path: Path) -> None:
    here = link_tree(packaged_minilm(), tmp_path / "machine-a" / "mini")
    there = link_tree(packaged_minilm(), tmp_path / "machine-b" / "venv" / "mini")
    a, b = model_identity(resolve_model(str(here))), model_identity(resolve_model(str(there)))
    assert a == b and a.identity.startswith("sha256:") and str(tmp_path) not in a.identity
    config = json.loads((there / "config.json").read_text())
    (there / "config.json").unlink()
    (there / "config.json").write_text(json.dumps({**config, "hidden_dropout_prob": 0.3}))
    assert model_identity(resolve_model(str(there))) != a  # another config: another model
    assert model_identity(resolve_model("minilm")) == ModelIdentity("minilm")  # wherever the package sits
    assert model_identity(resolve_model("no-such-org/no-such-model")) == ModelIdentity("no-such-org/no-such-model")


def test_checkpoints_of_earlier_versions_with_an_absolute_path_still_match(tmp_path: Path) -> None:
    folder = link_tree(packaged_minilm(), tmp_path / "mini")
    current = model_identity(resolve_model(str(folder)))
    assert same_model(str(folder.resolve()), current)
    assert not same_model(str(tmp_path / "gone"), current)
    assert not same_model("minilm", current)


@pytest.mark.slow
def test_resume_on_another_machine_with_the_model_elsewhere(tmp_path: Path, cli) -> None:
    """A checkpoint copied to another root resumes with the same model folder copied to another path."""
    configs = write_configs(tmp_path / "configs", transformer=transformer_yaml())
    first_root = write_processed(tmp_path / "machine-a" / "root")
    first_model = link_tree(packaged_minilm(), tmp_path / "machine-a" / "models" / "mini")
    args = ("train", "transformer", "--config-dir", configs, "--max-steps", "2")
    result = cli(*args, "--model-name", first_model, "--root", first_root)
    assert result.exit_code == 0, result.stderr

    second_root = write_processed(tmp_path / "machine-b" / "root")
    shutil.copytree(first_root / "models" / "checkpoints", second_root / "models" / "checkpoints")
    second_model = link_tree(packaged_minilm(), tmp_path / "machine-b" / "opt" / "mini")
    shutil.rmtree(tmp_path / "machine-a")  # the first machine is gone
    result = cli(*args, "--model-name", second_model, "--root", second_root)
    assert result.exit_code == 0, result.stderr
    assert f"resuming from {second_root.resolve()}/models/checkpoints/mini-epoch1 (epoch 2, step 2)" in result.stderr
    state = checkpoint.verify(second_root / "models/checkpoints/mini-epoch1")
    assert state["model_identity"] == model_identity(resolve_model(str(second_model))).identity


# -- the output places -------------------------------------------------------------------------------------------
def test_outputs_default_to_the_root_and_travel_through_the_environment(tmp_path: Path) -> None:
    root = Storage(str(tmp_path / "root"))
    default = Outputs.under(root)
    assert default.checkpoint("minilm", "step200") == "models/checkpoints/minilm-step200"
    assert default.final_model("minilm") == Place(root, "models/final/minilm")
    assert default.results is root and default.to_env() == {}
    env = {CHECKPOINT_DIR_ENV: str(tmp_path / "ckpt"), MODEL_DIR_ENV: str(tmp_path / "model"),
           RESULTS_ROOT_ENV: str(tmp_path / "out")}
    moved = Outputs.from_env(root, env)
    assert moved.checkpoint("minilm", "best") == "minilm-best"
    assert moved.checkpoints.url("minilm-best") == str(tmp_path / "ckpt" / "minilm-best")
    assert moved.final_model("minilm").url() == str(tmp_path / "model")
    assert moved.results.url() == str(tmp_path / "out")
    assert moved.to_env() == env


@pytest.mark.slow
def test_checkpoints_model_and_results_each_land_in_their_own_folder(tmp_path: Path, cli,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """As a SageMaker entry point sets them: /opt/ml/checkpoints, SM_MODEL_DIR, an output folder."""
    root = write_processed(tmp_path / "root")
    configs = write_configs(tmp_path / "configs", transformer=transformer_yaml(
        checkpoint={"every_steps": 1, "every_minutes": None, "keep_last_epochs": 2}))
    ckpt, model_dir, results = tmp_path / "opt-ml-checkpoints", tmp_path / "sm-model-dir", tmp_path / "output"
    monkeypatch.setenv(CHECKPOINT_DIR_ENV, str(ckpt))
    monkeypatch.setenv(MODEL_DIR_ENV, str(model_dir))
    monkeypatch.setenv(RESULTS_ROOT_ENV, str(results))
    args = ("train", "transformer", "--model-name", "minilm", "--root", root, "--config-dir", configs,
            "--max-steps", "2")
    result = cli(*args)
    assert result.exit_code == 0, result.stderr

    # checkpoint.keep: last dropped the finished run's older step checkpoint; -best stays whole here, since
    # the final model lives in another folder (SM_MODEL_DIR) that a pointer could not follow after the job
    assert sorted(p.name for p in ckpt.iterdir()) == ["minilm-best", "minilm-epoch1"]
    assert (ckpt / "minilm-best/model.safetensors").is_file() and not (ckpt / "minilm-best/final.json").exists()
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "tokenizer.json").is_file()
    assert json.loads((model_dir / "model.json").read_text())["labels"] == LABELS
    record = json.loads((results / "results/transformer/minilm_metrics.json").read_text())
    assert (results / "results/transformer/transformer_summary.csv").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["data"]  # nothing else under the root

    manifest = json.loads((results / "runs" / record["run_id"] / "manifest.json").read_text())
    outputs = manifest["outputs"]
    assert outputs[f"{model_dir}/model.safetensors"] == sha256(model_dir / "model.safetensors")
    assert outputs[f"{results}/results/transformer/minilm_metrics.json"] == sha256(
        results / "results/transformer/minilm_metrics.json")
    assert "data/processed/train_4class.csv" in manifest["inputs"]

    again = cli(*args)  # resume reads the checkpoint folder
    assert again.exit_code == 0, again.stderr
    assert f"resuming from {ckpt}/minilm-epoch1" in again.stderr


def test_the_final_model_is_hashed_as_written_not_read_back(tmp_path: Path, config_dir: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The manifest's hashes of models/final/<slug> come from the local folder before it is published."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    project = open_project(str(tmp_path / "root"), str(config_dir), "train transformer")
    model = BertForSequenceClassification(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32, num_labels=4))
    tokenizer = AutoTokenizer.from_pretrained(packaged_minilm())
    place = project.outputs.final_model("tiny")
    hashes = artifacts.save_final_model(place, model, tokenizer, LABELS, "tiny", 64)
    final = tmp_path / "root" / "models/final/tiny"
    assert hashes == {f"models/final/tiny/{p.name}": sha256(p) for p in final.iterdir() if p.name != "_COMPLETE"}

    def no_read_back(self: Storage, key: str, *args: object) -> bytes:
        assert not key.startswith("models/final"), f"{key} read back to hash it"
        return real_read_bytes(self, key, *args)

    real_read_bytes = Storage.read_bytes
    monkeypatch.setattr(Storage, "read_bytes", no_read_back)
    record = {"model": "tiny", "kind": "transformer", "accuracy": 1.0, "macro_f1": 1.0, "labels": LABELS}
    artifacts.write_results(project, "tiny", record, [], extra={}, output_hashes=hashes)
    manifest = json.loads((tmp_path / "root/runs" / project.run_id / "manifest.json").read_text())
    assert manifest["outputs"]["models/final/tiny/model.safetensors"] == sha256(final / "model.safetensors")
    assert manifest["outputs"]["results/transformer/tiny_metrics.json"] == sha256(
        tmp_path / "root/results/transformer/tiny_metrics.json")


def test_a_model_folder_of_its_own_is_filled_not_replaced(tmp_path: Path) -> None:
    """SM_MODEL_DIR exists before training (a mount point): files go in, the folder stays."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path / "sm-model"
    folder.mkdir()
    inode = folder.stat().st_ino
    model = BertForSequenceClassification(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32, num_labels=4))
    tokenizer = AutoTokenizer.from_pretrained(packaged_minilm())
    hashes = artifacts.save_final_model(Place(Storage(str(folder))), model, tokenizer, LABELS, "tiny", 64,
                                        name=str(folder))
    assert folder.stat().st_ino == inode
    assert hashes[f"{folder}/model.safetensors"] == sha256(folder / "model.safetensors")
    assert models.load_config(resolve_model(str(folder))).num_labels == 4
