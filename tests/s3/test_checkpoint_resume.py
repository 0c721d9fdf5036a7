"""Spot-style interruption on an s3:// root: the machine dies mid-training, a fresh one resumes from S3."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from multitype.storage import Storage
from multitype.sync import sync
from multitype.transformer import checkpoint
from tests.conftest import write_configs
from tests.transformer.conftest import (SUBPROCESS_ENV, one_thread, train_args,  # noqa: F401  (fixtures)
                                        trained, transformer_yaml, write_processed)
from tests.transformer.test_resume import assert_same_result

pytestmark = pytest.mark.slow  # every test here trains the real MiniLM (or reads a run that did)

CKPT = "models/checkpoints"


def test_killed_on_s3_then_resumed_on_an_empty_disk(trained, tmp_path: Path, cli, s3_server,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    reference, _ = trained  # the same run, uninterrupted, on a local root
    # epoch checkpoints only: each is ~270 MB (weights + AdamW state) to upload
    configs = write_configs(tmp_path / "configs", transformer=transformer_yaml(
        checkpoint={"every_steps": None, "every_minutes": None, "keep_last_epochs": 1}))
    bucket = s3_server.make_bucket("spot")
    root = f"s3://{bucket}/proj"
    sync("push", write_processed(tmp_path / "prepared"), root, only="data")

    first_disk = tmp_path / "first-machine"
    first_disk.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "multitype", *train_args(root, configs)],
                            env={**os.environ, **SUBPROCESS_ENV, "TMPDIR": str(first_disk)},
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "first.err", "wb"))
    marker = f"proj/{CKPT}/minilm-epoch1/_COMPLETE"
    deadline = time.monotonic() + 300
    try:
        while marker not in s3_server.list_keys(bucket, f"proj/{CKPT}/"):
            assert proc.poll() is None, (tmp_path / "first.err").read_text(errors="replace")
            assert time.monotonic() < deadline, "no step checkpoint in S3 within 300 s"
            time.sleep(0.1)
    finally:
        proc.kill()  # the instance is gone, uploads in flight included
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    storage = Storage(root)
    assert storage.is_complete(f"{CKPT}/minilm-epoch1")
    assert not storage.exists("models/final/minilm/model.safetensors")
    shutil.rmtree(first_disk)  # nothing of the first machine survives

    second_disk = tmp_path / "second-machine"
    second_disk.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(second_disk))
    monkeypatch.chdir(second_disk)
    point = checkpoint.find_resume_point(storage, "minilm", warn=lambda m: None)
    assert point is not None and point.state["global_step"] >= 3
    point.close()
    result = cli(*train_args(root, configs))
    assert result.exit_code == 0, result.stderr
    assert f"resuming from {root}/{CKPT}/minilm-" in result.stderr
    assert list(second_disk.iterdir()) == []  # staging and downloaded checkpoints cleaned up

    # the result in S3 is the uninterrupted run's, weights and metrics
    pulled = tmp_path / "pulled"
    sync("pull", pulled, root, only="models,results")
    assert_same_result(pulled, reference)
