"""Many models at once, many processes for one model (DDP, exercised on CPU with gloo), --gpus on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from multitype.errors import ModelError
from multitype.transformer.launch import processes_for
from tests.transformer.conftest import SUBPROCESS_ENV, train_args


@pytest.mark.parametrize(("gpus", "available", "expected"), [
    ("all", 0, 0), ("all", 4, 4), ("2", 4, 2), ("8", 4, 4), ("1", 4, 1), ("2", 0, 0)])
def test_processes_for(gpus: str, available: int, expected: int) -> None:
    assert processes_for(gpus, available) == expected


@pytest.mark.parametrize("gpus", ["0", "-1", "two", ""])
def test_bad_gpus_value(gpus: str) -> None:
    with pytest.raises(ModelError, match="--gpus must be 'all' or a positive number"):
        processes_for(gpus, 4)


@pytest.mark.slow
def test_gpus_all_without_gpu_trains_on_cpu(tiny_project, cli) -> None:
    root, configs = tiny_project
    result = cli(*train_args(root, configs, "--gpus", "all", "--max-steps", "1"))
    assert result.exit_code == 0, result.stderr
    assert "--gpus all: no CUDA GPU found; training on the CPU" in result.stderr
    assert json.loads((root / "results/transformer/minilm_metrics.json").read_text())["world_size"] == 1


@pytest.mark.slow
def test_parallel_keeps_going_when_one_model_fails(tiny_project, cli, monkeypatch) -> None:
    for name, value in SUBPROCESS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root, configs = tiny_project
    result = cli("train", "parallel", "--models", "no-such-org/no-such-model", "minilm", "--max-steps", "1",
                 "--root", root, "--config-dir", configs)
    assert result.exit_code == 1
    assert "one after another on the CPU" in result.stderr
    assert (root / "results/transformer/minilm_metrics.json").exists()
    assert (root / "models/final/minilm/model.safetensors").exists()
    [run] = [p for p in (root / "runs").iterdir() if "train-parallel" in p.name]
    failed_log = (run / "no-such-org__no-such-model.log").read_text()
    assert "error: model 'no-such-org/no-such-model'" in failed_log
    assert "METRIC test_accuracy=" in (run / "minilm.log").read_text()
    jobs = {job["model"]: job for job in json.loads((run / "manifest.json").read_text())["jobs"]}
    assert jobs["no-such-org/no-such-model"]["exit_code"] == 2 and jobs["minilm"]["exit_code"] == 0
    table = " ".join(result.stderr.split())
    assert "failed (bad input)" in table and "ok" in table


def test_parallel_refuses_bad_values_before_starting_anything(tiny_project, cli) -> None:
    root, configs = tiny_project
    result = cli("train", "parallel", "--models", "minilm,minilm", "--root", root, "--config-dir", configs)
    assert result.exit_code == 2 and "lists 'minilm' twice" in result.stderr
    result = cli("train", "parallel", "--models", "minilm", "--batch-size", "0", "--root", root, "--config-dir", configs)
    assert result.exit_code == 2 and "batch_size" in result.stderr
    assert not (root / "runs").exists()


@pytest.mark.slow
def test_ddp_ranks_under_torchrun_on_cpu(tiny_project, tmp_path: Path) -> None:
    """The multi-GPU code path (process group, sharded batches, rank-0 writes) with 2 CPU processes."""
    root, configs = tiny_project
    spec = tmp_path / "spec.json"
    outcome = tmp_path / "outcome.json"
    spec.write_text(json.dumps({
        "root": str(root), "endpoint_url": None, "config_dir": str(configs), "command": "train transformer",
        "run_id": "ddp-test", "params": {"model_name": "minilm", "max_length": 64, "batch_size": 4, "num_epochs": 1,
                                         "precision": "fp32", "early_stopping_patience": None},
        "resume": "auto", "outcome": str(outcome)}))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "multitype.transformer", str(spec)], env={**os.environ, **SUBPROCESS_ENV},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((root / "results/transformer/minilm_metrics.json").read_text())
    # the node's outcome: local rank 0's own evaluation, here the written record
    assert json.loads(outcome.read_text()) == {"exit_code": 0, "slug": "minilm", "record": record}
    assert record["world_size"] == 2 and record["run_id"] == "ddp-test"
    assert record["global_step"] == 3  # 24 examples / (4 per batch x 2 processes)
    assert proc.stdout.count("METRIC test_accuracy=") == 1  # only rank 0 reports
    assert [p.name for p in (root / "runs").iterdir()] == ["ddp-test"]


def test_no_descriptor_leaks_across_jobs_on_an_s3_root(s3_server, config_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """On an S3 root each job logs to a mkstemp file uploaded at its end: every descriptor is closed."""
    from multitype import layout
    from multitype.project import open_project
    from multitype.transformer import parallel

    root = f"s3://{s3_server.make_bucket('logs')}/proj"
    project = open_project(root, str(config_dir), "train parallel")
    monkeypatch.setattr(parallel, "_child_command",
                        lambda project, model, overrides, resume: [sys.executable, "-c", f"print('{model} done')"])
    fds = lambda: len(os.listdir("/proc/self/fd"))  # noqa: E731
    jobs = [parallel.Job(f"m{i}", f"m{i}", layout.run_log(project.run_id, f"m{i}.log")) for i in range(6)]
    counts = []
    for job in jobs:
        parallel._start(project, job, None, {}, "auto")
        job.proc.wait(timeout=60)
        parallel._finish(project, job)
        assert not job.log_path.exists()  # the temp file went up and was removed
        counts.append(fds())
    assert counts[1:] == [counts[1]] * 5  # after the first job (which opens the S3 connection): flat
    assert project.storage.read_text(jobs[-1].log_key).strip() == "m5 done"


def test_one_model_folder_cannot_take_several_models(tiny_project, cli, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root, configs = tiny_project
    monkeypatch.setenv("MULTITYPE_MODEL_DIR", str(tmp_path / "sm-model"))
    result = cli("train", "parallel", "--models", "minilm,other", "--root", root, "--config-dir", configs)
    assert result.exit_code == 2
    assert f"the final model folder is set to {tmp_path / 'sm-model'} (MULTITYPE_MODEL_DIR)" in result.stderr
    assert not (root / "runs").exists()
