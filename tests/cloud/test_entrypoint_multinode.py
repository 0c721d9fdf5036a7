"""Two SageMaker hosts on loopback: two entry-script processes, each with its own ``/opt/ml`` tree, one job.

Each tree's ``resourceconfig.json`` names the hosts ``algo-1`` and ``algo-2``; the
entry scripts build a torchrun static rendezvous from them (gloo on CPU), with
``MULTITYPE_SM_MASTER_ADDR=127.0.0.1`` standing in for the name ``algo-1``, which
only SageMaker's network resolves. Both ranks must agree (the second host's rank
measures the same validation losses and test scores with its copy of the final
model as the metrics JSON records), and one set of artifacts must appear: the
model in algo-1's ``SM_MODEL_DIR`` only, one metrics JSON, manifest and result.json.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.cloud import opt_ml
from tests.conftest import _free_ports, write_configs
from tests.transformer.conftest import transformer_yaml, write_processed

JOB = "multitype-minilm-20261201-130000"
HOSTS = ("algo-1", "algo-2")


@pytest.mark.slow
def test_two_hosts_train_one_model(s3_server: Any, tmp_path: Path) -> None:
    project = write_processed(tmp_path / "root")
    configs = write_configs(tmp_path / "configs", transformer=transformer_yaml(num_epochs=2))
    bucket = s3_server.make_bucket()
    hyperparameters = {"task": "transformer", "model-name": "minilm", "root": f"s3://{bucket}/proj"}
    rendezvous = {"MULTITYPE_SM_MASTER_ADDR": "127.0.0.1", "MULTITYPE_SM_MASTER_PORT": str(_free_ports(1)[0]),
                  "SM_NUM_GPUS": "0", "GLOO_SOCKET_IFNAME": "lo", **s3_server.env}
    bases, procs = [], []
    try:
        for host in HOSTS:
            base = opt_ml.build_tree(tmp_path / host / "ml", project, configs, hyperparameters, host=host, hosts=HOSTS)
            bases.append(base)
            procs.append(opt_ml.start(base, JOB, env=rendezvous))
        codes = [proc.wait(timeout=240) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    outputs = [opt_ml.output(base) for base in bases]
    assert codes == [0, 0], [err[-3000:] for _, err in outputs]

    metrics = json.loads(s3_server.client().get_object(
        Bucket=bucket, Key="proj/results/transformer/minilm_metrics.json")["Body"].read())
    assert metrics["world_size"] == 2 and metrics["global_step"] == 4  # 24 examples / (8 x 2 processes), 2 epochs
    # the second host's rank evaluated its own copy of the final model: the same numbers
    check_lines = [line for line in outputs[1][1].splitlines() if "rank check: " in line]
    assert len(check_lines) == 1, outputs[1][1][-3000:]
    check = json.loads(check_lines[0].split("rank check: ", 1)[1])
    assert check["host"] == "algo-2"
    assert check["val_loss"] == [entry["val_loss"] for entry in metrics["history"]]
    assert (check["accuracy"], check["macro_f1"]) == (metrics["accuracy"], metrics["macro_f1"])
    assert "rank check" not in outputs[0][1]

    # one set of artifacts, from algo-1 (global rank 0)
    first, second = bases
    assert (first / "model" / "model.safetensors").exists() and (first / "model" / "config.json").exists()
    assert not os.listdir(second / "model")
    assert (first / "checkpoints" / "minilm-best").is_dir() and not os.listdir(second / "checkpoints")
    keys = s3_server.list_keys(bucket, "proj/")
    assert [k for k in keys if k.endswith("_metrics.json")] == ["proj/results/transformer/minilm_metrics.json"]
    assert [k for k in keys if k.endswith("manifest.json")] == [f"proj/runs/{metrics['run_id']}/manifest.json"]
    assert [k for k in keys if k.endswith("result.json")] == [f"proj/runs/sagemaker/{JOB}/result.json"]
    assert not (second / "output" / "data" / "result.json").exists()
    # the METRIC lines come from global rank 0 alone
    assert any(line.startswith("METRIC test_accuracy=") for line in outputs[0][0].splitlines())
    assert not any(line.startswith("METRIC") for line in outputs[1][0].splitlines())


@pytest.mark.slow
def test_sigterm_reaches_the_ranks_through_torchrun(s3_server: Any, tmp_path: Path) -> None:
    """Several processes on one host (SM_NUM_GPUS=2 on CPU: 2 gloo ranks): SIGTERM is forwarded, the ranks
    save a step checkpoint, the entry script exits 143."""
    import signal

    from multitype.storage import COMPLETE_MARKER

    project = write_processed(tmp_path / "root")
    configs = write_configs(tmp_path / "configs", transformer=transformer_yaml(num_epochs=6, batch_size=4))
    bucket = s3_server.make_bucket()
    base = opt_ml.build_tree(tmp_path / "ml", project, configs, {"task": "transformer", "model-name": "minilm",
                                                                 "root": f"s3://{bucket}/proj"})
    env = {"SM_NUM_GPUS": "2", "MULTITYPE_SM_MASTER_PORT": str(_free_ports(1)[0]), "GLOO_SOCKET_IFNAME": "lo",
           **s3_server.env}
    proc = opt_ml.start(base, JOB, env=env)
    try:
        opt_ml.wait_for(lambda: (base / "checkpoints" / "minilm-step2" / COMPLETE_MARKER).exists(), proc)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = opt_ml.output(base)[1]
    assert code == 143, err[-3000:]
    assert "--nnodes=1 --node_rank=0 --nproc_per_node=2 --master_addr=127.0.0.1" in err
    steps = sorted(int(p.name.rsplit("step", 1)[1]) for p in (base / "checkpoints").glob("minilm-step*"))
    assert steps and steps[-1] > 2 and steps[-1] < 18, steps  # saved after the signal, before the end (18 steps)
    state = json.loads((base / "checkpoints" / f"minilm-step{steps[-1]}" / "state.json").read_text())
    assert state["world_size"] == 2
    assert not s3_server.list_keys(bucket, f"proj/runs/sagemaker/{JOB}/")
