"""Training with an s3:// root (SeaweedFS): checkpoints uploaded whole with a marker, resume reads them back."""

from __future__ import annotations

from pathlib import Path

import pytest

from multitype.storage import Storage
from multitype.transformer import checkpoint
from tests.conftest import write_configs
from tests.transformer.conftest import transformer_yaml, write_processed

pytestmark = pytest.mark.slow  # every test here trains the real MiniLM (or reads a run that did)


def test_train_and_resume_on_an_s3_root(s3_server, tmp_path: Path, cli) -> None:
    configs = write_configs(tmp_path / "configs", transformer=transformer_yaml(
        checkpoint={"every_steps": 1, "every_minutes": None, "keep_last_epochs": 1}))
    local = write_processed(tmp_path / "local")
    bucket = s3_server.make_bucket("train")
    root = f"s3://{bucket}/proj"
    storage = Storage(root, endpoint_url=s3_server.endpoint_url)
    for path in sorted((local / "data/processed").iterdir()):
        storage.put_file(path, f"data/processed/{path.name}")

    args = ("train", "transformer", "--model-name", "minilm", "--root", root, "--config-dir", configs,
            "--max-steps", "2")
    first = cli(*args)
    assert first.exit_code == 0, first.stderr
    keys = s3_server.list_keys(bucket, "proj/")
    # checkpoint.keep: last once the run finished: the older step checkpoint gone, -best a pointer to the final model
    assert not [k for k in keys if "minilm-step1/" in k or k.endswith("minilm-best/model.safetensors")]
    for key in ("models/checkpoints/minilm-epoch1/_COMPLETE", "models/checkpoints/minilm-epoch1/optimizer.pt",
                "models/checkpoints/minilm-best/final.json", "models/final/minilm/model.safetensors",
                "models/final/minilm/tokenizer.json", "results/transformer/minilm_metrics.json",
                "results/transformer/transformer_summary.csv"):
        assert f"proj/{key}" in keys, key
    assert any(k.startswith("proj/runs/") and k.endswith("/manifest.json") for k in keys)

    point = checkpoint.find_resume_point(storage, "minilm", warn=lambda m: None)
    assert point is not None and point.key.endswith("minilm-epoch1") and point.state["global_step"] == 2
    assert point.folder.exists()
    point.close()
    assert not point.folder.exists()  # the downloaded copy is cleaned up

    again = cli(*args)  # the run is complete: resume re-evaluates the best model and writes the same metrics
    assert again.exit_code == 0, again.stderr
    assert "resuming from s3://" in again.stderr and "step 2)" in again.stderr
    assert "warning" not in again.stderr  # -best read through its pointer from S3
    assert "METRIC test_accuracy=" in again.stdout and "METRIC train_loss" not in again.stdout
