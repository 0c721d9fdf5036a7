"""The entry script inside a SageMaker job, run as a real process on a fake ``/opt/ml`` tree (see ``opt_ml.py``).

Fast tests read the environment and refuse bad input in-process. The slow ones
train the tiny project end to end with results in S3 (SeaweedFS): an
uninterrupted job, one SIGTERMed mid-training and restarted on its checkpoint
folder after the markers were removed and the newest checkpoint cut (as a
spot restart may leave it), finishing with the same weights and metrics, and a
baseline job.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

import multitype
from multitype.cloud.sagemaker import entrypoint
from multitype.cloud.sagemaker.environment import parse_args, read_environment
from multitype.storage import COMPLETE_MARKER
from tests.cloud import opt_ml
from tests.conftest import write_configs
from tests.transformer.conftest import transformer_yaml, write_processed

JOB = "multitype-minilm-20261201-120000"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(processed project, configs): 48 real BBC articles; 4 epochs of 3 steps, a step checkpoint every 2."""
    base = tmp_path_factory.mktemp("project")
    return (write_processed(base / "root"),
            write_configs(base / "configs", transformer=transformer_yaml(num_epochs=4)))


# -- the environment -----------------------------------------------------------------------------------------------
def test_arguments_are_decoded_like_the_toolkit() -> None:
    values = parse_args(["stray", "--num-epochs", "3", "--learning-rate=2e-05", "--model-name", "minilm", "--models",
                         "[\"a\", \"b\"]", "--root", "s3://my-bucket/proj", "--flag", "--resume", "never"])
    assert values == {"num-epochs": 3, "learning-rate": 2e-05, "model-name": "minilm", "models": ["a", "b"],
                      "root": "s3://my-bucket/proj", "flag": True, "resume": "never"}


def test_environment_from_files_without_the_toolkit(tmp_path: Path, project: tuple[Path, Path]) -> None:
    base = opt_ml.build_tree(tmp_path / "ml", *project, {"task": "transformer", "num-epochs": 2, "root": "s3://my-bucket/proj"},
                             host="algo-2", hosts=("algo-1", "algo-2"))
    env = read_environment([], {"SAGEMAKER_BASE_DIR": str(base), "SM_NUM_GPUS": "0"})
    assert env.hyperparameters == {"task": "transformer", "num-epochs": 2, "root": "s3://my-bucket/proj"}  # no sagemaker_*
    assert env.channels == {name: base / "input" / "data" / name for name in opt_ml.CHANNELS}
    assert (env.model_dir, env.output_data_dir, env.checkpoint_dir) == (
        base / "model", base / "output" / "data", base / "checkpoints")
    assert (env.hosts, env.current_host, env.node_rank, env.multi_node) == (["algo-1", "algo-2"], "algo-2", 1, True)
    assert env.job_name.startswith("local-")
    assert read_environment([], {"SAGEMAKER_BASE_DIR": str(base), "SM_NUM_GPUS": "0",
                                 "SM_TRAINING_ENV": json.dumps({"job_name": "from-training-env"})}).job_name \
        == "from-training-env"


def test_toolkit_arguments_and_variables_win(tmp_path: Path, project: tuple[Path, Path]) -> None:
    base = opt_ml.build_tree(tmp_path / "ml", *project, {"task": "transformer", "num-epochs": 2, "root": "s3://my-bucket/proj"})
    args, variables = opt_ml.toolkit(base, {"task": "transformer", "num-epochs": 5, "root": "s3://my-bucket/proj"},
                                     hosts=("algo-1", "algo-2", "algo-3"), num_gpus=4)
    variables.update({"SAGEMAKER_BASE_DIR": str(base), "SM_CHANNEL_TRAIN": str(tmp_path / "moved"),
                      "SM_MODEL_DIR": str(tmp_path / "model"), "TRAINING_JOB_NAME": JOB})
    env = read_environment(args, variables)
    assert env.hyperparameters["num-epochs"] == 5
    assert env.channels["train"] == tmp_path / "moved" and env.model_dir == tmp_path / "model"
    assert (env.hosts, env.num_gpus, env.job_name) == (["algo-1", "algo-2", "algo-3"], 4, JOB)


def test_torchrun_rendezvous_from_the_hosts(tmp_path: Path, project: tuple[Path, Path]) -> None:
    base = opt_ml.build_tree(tmp_path / "ml", *project, {"task": "transformer", "root": "s3://my-bucket/proj"},
                             host="algo-2", hosts=("algo-1", "algo-2"))
    env = read_environment([], {"SAGEMAKER_BASE_DIR": str(base), "SM_NUM_GPUS": "8"})
    assert entrypoint.torchrun_args(env, {}) == [
        "--nnodes=2", "--node_rank=1", "--nproc_per_node=8", "--master_addr=algo-1", "--master_port=29500"]
    assert entrypoint.torchrun_args(env, {"MULTITYPE_SM_MASTER_ADDR": "127.0.0.1",
                                          "MULTITYPE_SM_MASTER_PORT": "4242"})[-2:] == [
        "--master_addr=127.0.0.1", "--master_port=4242"]
    # NCCL and gloo talk over the job's interface (resourceconfig.json's network_interface_name) unless told
    assert env.network_interface == "eth0"
    assert entrypoint.torchrun_env(env, {}) == {"NCCL_SOCKET_IFNAME": "eth0", "GLOO_SOCKET_IFNAME": "eth0"}
    assert entrypoint.torchrun_env(env, {"GLOO_SOCKET_IFNAME": "lo"}) == {"NCCL_SOCKET_IFNAME": "eth0"}


# -- bad input: one line, exit 2, the reason in <base>/output/failure, nothing trained ------------------------------
@pytest.mark.parametrize("hyperparameters, channels, message", [
    ({"root": "s3://my-bucket/proj"}, opt_ml.CHANNELS, "hyperparameter 'task' must be one of transformer, baseline, parallel"),
    ({"task": "tune", "root": "s3://my-bucket/proj"}, opt_ml.CHANNELS, "got 'tune'"),
    ({"task": "transformer"}, opt_ml.CHANNELS, "hyperparameter 'root' (the S3 root that results/ and runs/ go to)"),
    ({"task": "transformer", "models": "a,b", "root": "s3://my-bucket/proj"}, opt_ml.CHANNELS,
     "task transformer trains one model"),
    ({"task": "parallel", "root": "s3://my-bucket/proj"}, opt_ml.CHANNELS, "task parallel needs hyperparameter 'models'"),
    ({"task": "transformer", "resume": "always", "root": "s3://my-bucket/proj"}, opt_ml.CHANNELS,
     "'resume' must be 'auto' or 'never', got 'always'"),
    ({"task": "transformer", "num-epochs": -1, "root": "s3://my-bucket/proj"}, opt_ml.CHANNELS, "num_epochs"),
    ({"task": "transformer", "root": "s3://my-bucket/proj"}, ("train", "val", "labels", "configs"),
     "input channel 'test' not found"),
    ({"task": "baseline", "root": "s3://my-bucket/proj"}, ("train", "val", "test", "labels"), "input channel 'configs' not found"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, project: tuple[Path, Path], capsys: pytest.CaptureFixture,
                                          monkeypatch: pytest.MonkeyPatch, hyperparameters: dict[str, Any],
                                          channels: tuple[str, ...], message: str) -> None:
    base = opt_ml.build_tree(tmp_path / "ml", *project, hyperparameters, channels=channels)
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(base))
    monkeypatch.setenv("SM_NUM_GPUS", "0")
    capsys.readouterr()
    assert entrypoint.main([]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and message in err[0], err
    assert message in (base / "output" / "failure").read_text()
    assert not list((base / "model").iterdir()) and not list((base / "checkpoints").iterdir())


def test_a_channel_without_its_file_names_both(tmp_path: Path, project: tuple[Path, Path],
                                               capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    base = opt_ml.build_tree(tmp_path / "ml", *project, {"task": "baseline", "root": "s3://my-bucket/proj"})
    (base / "input" / "data" / "train" / "train_4class.csv").rename(base / "input" / "data" / "train" / "x.csv")
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(base))
    monkeypatch.setenv("SM_NUM_GPUS", "0")
    assert entrypoint.main([]) == 2
    err = capsys.readouterr().err
    assert f"error: {base}/input/data/train/train_4class.csv not found (labels.json has 4 classes; the channel " \
           "holds x.csv)" in err


def test_baselines_run_on_the_first_host_alone(tmp_path: Path, project: tuple[Path, Path],
                                              capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    base = opt_ml.build_tree(tmp_path / "ml", *project, {"task": "baseline", "root": "s3://my-bucket/proj"},
                             host="algo-2", hosts=("algo-1", "algo-2"))
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(base))
    monkeypatch.setenv("SM_NUM_GPUS", "0")
    assert entrypoint.main([]) == 0
    assert "task baseline runs on algo-1 alone; nothing to do on algo-2" in capsys.readouterr().err
    assert not (base / entrypoint.WORK_DIR).exists() and not list((base / "model").iterdir())


def test_working_root_from_the_channels(tmp_path: Path, project: tuple[Path, Path],
                                        capsys: pytest.CaptureFixture) -> None:
    """The layout's data/processed/ and configs/, with a laptop's aws.profile dropped (the job has a role)."""
    import yaml

    from multitype.config import load_configs

    processed, configs = project
    own = tmp_path / "configs"
    own.mkdir()
    for path in configs.glob("*.yaml"):
        (own / path.name).write_bytes(path.read_bytes())
    data = yaml.safe_load((own / "project.yaml").read_text())
    data["aws"]["profile"] = "laptop"
    (own / "project.yaml").write_text(yaml.safe_dump(data))
    base = opt_ml.build_tree(tmp_path / "ml", processed, own, {"task": "transformer", "root": "s3://my-bucket/p"},
                             channels=("train", "test", "labels", "configs"))  # no val channel: allowed
    env = read_environment([], {"SAGEMAKER_BASE_DIR": str(base), "SM_NUM_GPUS": "0"})
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "stale.txt").write_text("from an earlier attempt")
    work = entrypoint.assemble_root(env, tmp_path / "work")
    assert sorted(p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file()) == [
        "configs/data_config.yaml", "configs/models_baseline.yaml", "configs/models_transformer.yaml",
        "configs/project.yaml", "data/processed/labels.json", "data/processed/test_4class.csv",
        "data/processed/train_4class.csv"]
    assert (work / "data/processed/train_4class.csv").read_bytes() == \
        (processed / "data/processed/train_4class.csv").read_bytes()
    assert load_configs(str(work / "configs")).project.aws.profile is None
    assert "ignoring aws.profile 'laptop'" in capsys.readouterr().err


def test_unknown_hyperparameters_are_reported_and_ignored() -> None:
    said: list[str] = []
    task = entrypoint.read_task({"task": "baseline", "root": "s3://my-bucket/proj", "epochs": 3, "num-epochs": 2}, say=said.append)
    assert task.kind == "baseline" and task.overrides == {}
    assert any("ignoring hyperparameter 'epochs'" in line for line in said)
    assert any("num-epochs do not apply to task baseline" in line for line in said)


# -- end to end (real processes, results in SeaweedFS) -------------------------------------------------------------
def _s3_json(s3_server: Any, bucket: str, key: str) -> Any:
    return json.loads(s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read())


def _weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


SAME_METRICS = ("accuracy", "macro_f1", "weighted_f1", "confusion_matrix", "per_class", "global_step",
                "epochs_trained", "best_epoch")


@pytest.fixture(scope="module")
def plain_job(s3_server: Any, tmp_path_factory: pytest.TempPathFactory, project: tuple[Path, Path]) -> dict[str, Any]:
    """An uninterrupted transformer job started as the toolkit starts it (arguments + SM_* variables)."""
    bucket = s3_server.make_bucket()
    root = f"s3://{bucket}/proj"
    hyperparameters = {"task": "transformer", "model-name": "minilm", "root": root}
    base = opt_ml.build_tree(tmp_path_factory.mktemp("plain") / "ml", *project, hyperparameters)
    args, variables = opt_ml.toolkit(base, hyperparameters)
    code, out, err = opt_ml.run(base, JOB, args, {**s3_server.env, **variables})
    assert code == 0, err
    return {"base": base, "bucket": bucket, "root": root, "stdout": out, "stderr": err}


@pytest.mark.slow
def test_transformer_job_writes_what_a_local_run_writes(s3_server: Any, plain_job: dict[str, Any]) -> None:
    from multitype.predictor import load_predictor

    base, bucket = plain_job["base"], plain_job["bucket"]
    # the package came from the bundle beside entry.py, not from an installed copy
    assert f"[multitype] multitype {multitype.__version__} from {base}/code/src/multitype" in plain_job["stderr"]
    # the final model: SM_MODEL_DIR itself, save_pretrained form, loadable
    model_dir = base / "model"
    assert {"config.json", "model.safetensors", "tokenizer.json", "model.json"} <= {p.name for p in model_dir.iterdir()}
    predictor = load_predictor(model_dir, device="cpu")
    labels, scores = predictor.predict(["The central bank raised interest rates again."])
    assert labels[0] in predictor.labels and scores.shape == (1, 4)
    # results in the root, as a local run writes them; result.json names them
    keys = s3_server.list_keys(bucket, "proj/")
    metrics = _s3_json(s3_server, bucket, "proj/results/transformer/minilm_metrics.json")
    assert "proj/results/transformer/transformer_summary.csv" in keys
    manifests = [k for k in keys if k.endswith("/manifest.json")]
    assert manifests == [f"proj/runs/{metrics['run_id']}/manifest.json"]
    result = _s3_json(s3_server, bucket, f"proj/runs/sagemaker/{JOB}/result.json")
    assert result["job_name"] == JOB and result["task"] == "transformer"
    assert result["run_ids"] == [metrics["run_id"]]
    assert result["models"] == {"minilm": {"metrics": "results/transformer/minilm_metrics.json", "model_dir": ""}}
    assert json.loads((base / "output" / "data" / "result.json").read_text()) == result
    # checkpoints in /opt/ml/checkpoints (what SageMaker syncs), none under the root
    assert (base / "checkpoints" / "minilm-best" / COMPLETE_MARKER).exists()
    assert not [k for k in keys if "/models/" in k]
    # the METRIC lines SageMaker's metric definitions match, on stdout
    lines = plain_job["stdout"].splitlines()
    assert f"METRIC test_accuracy={metrics['accuracy']:.6g}" in lines
    assert any(line.startswith("METRIC val_loss=") for line in lines)


@pytest.mark.slow
def test_spot_interruption_resumes_from_a_markerless_restore(s3_server: Any, tmp_path: Path,
                                                            project: tuple[Path, Path],
                                                            plain_job: dict[str, Any]) -> None:
    """SIGTERM mid-training: checkpoint, exit 143; restored without markers and one file cut: same result."""
    bucket = s3_server.make_bucket()
    base = opt_ml.build_tree(tmp_path / "ml", *project, {"task": "transformer", "model-name": "minilm",
                                                         "root": f"s3://{bucket}/proj"})
    checkpoints = base / "checkpoints"
    proc = opt_ml.start(base, JOB, env=s3_server.env)
    try:
        opt_ml.wait_for(lambda: (checkpoints / "minilm-step2" / COMPLETE_MARKER).exists(), proc)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        code = proc.wait(timeout=120)  # SageMaker's spot warning: 120 s
        answered = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out, err = opt_ml.output(base)
    assert code == 143, err
    print(f"SIGTERM answered with a checkpoint in {answered:.1f} s")
    assert "SIGTERM: checkpoint saved at step" in err
    steps = sorted(int(p.name.rsplit("step", 1)[1]) for p in checkpoints.glob("minilm-step*"))
    assert len(steps) == 2 and steps[-1] < 12, steps
    assert not s3_server.list_keys(bucket, f"proj/runs/sagemaker/{JOB}/")  # no result.json for a stopped job

    # what a spot restart may leave: every marker gone (SageMaker's sync does not know it), the newest cut short
    for marker in checkpoints.glob(f"*/{COMPLETE_MARKER}"):
        marker.unlink()
    newest = checkpoints / f"minilm-step{steps[-1]}" / "optimizer.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    code, out, err = opt_ml.run(base, JOB, env=s3_server.env)
    assert code == 0, err
    assert f"minilm-step{steps[-1]} skipped: optimizer.pt does not match its checksum" in err
    assert f"resuming from {checkpoints}/minilm-step{steps[0]}" in err

    # the same model and metrics as the job that was never interrupted
    want, got = _weights(plain_job["base"] / "model"), _weights(base / "model")
    assert want.keys() == got.keys()
    for name in want:
        assert (want[name] - got[name]).abs().max().item() <= 1e-6, name
    plain = _s3_json(s3_server, plain_job["bucket"], "proj/results/transformer/minilm_metrics.json")
    resumed = _s3_json(s3_server, bucket, "proj/results/transformer/minilm_metrics.json")
    for key in SAME_METRICS:
        assert resumed[key] == plain[key], key
    assert [round(h["val_loss"], 5) for h in resumed["history"]] == [round(h["val_loss"], 5) for h in plain["history"]]
    assert _s3_json(s3_server, bucket, f"proj/runs/sagemaker/{JOB}/result.json")["run_ids"] == [resumed["run_id"]]


@pytest.mark.slow
def test_baseline_job(s3_server: Any, tmp_path: Path) -> None:
    from multitype.predictor import load_predictor

    project = write_processed(tmp_path / "root", sizes={"train": 30, "val": 5, "test": 10})
    configs = write_configs(tmp_path / "configs")
    bucket = s3_server.make_bucket()
    base = opt_ml.build_tree(tmp_path / "ml", project, configs, {"task": "baseline", "root": f"s3://{bucket}/proj"})
    code, out, err = opt_ml.run(base, "multitype-baselines-20261201-120000", env=s3_server.env)
    assert code == 0, err
    for name in ("logreg", "linear_svm"):
        predictor = load_predictor(base / "model" / name)
        assert predictor.predict(["Shares fell sharply on the stock market."])[0][0] in predictor.labels
        record = _s3_json(s3_server, bucket, f"proj/results/baseline/{name}_metrics.json")
        assert record["model"] == name and 0 <= record["accuracy"] <= 1
        # the job keeps the per-text test predictions the report pairs and lists (what collect brings back)
        assert record["schema_version"] == 2 and record["predictions"]["num_samples"] == 40
        assert (record["predictions"]["probabilities"] is None) == (name == "linear_svm")
    assert not (base / "multitype-work" / "results").exists()  # baselines follow Outputs.results
    keys = s3_server.list_keys(bucket, "proj/")
    assert "proj/results/baseline/baseline_summary.csv" in keys
    assert [k for k in keys if k.endswith("manifest.json")] == [f"proj/runs/{record['run_id']}/manifest.json"]
    result = _s3_json(s3_server, bucket, "proj/runs/sagemaker/multitype-baselines-20261201-120000/result.json")
    assert result["task"] == "baseline" and result["run_ids"] == [record["run_id"]]
    assert result["models"] == {name: {"metrics": f"results/baseline/{name}_metrics.json", "model_dir": name}
                                for name in ("logreg", "linear_svm")}


@pytest.mark.slow
def test_parallel_job(s3_server: Any, tmp_path: Path, project: tuple[Path, Path]) -> None:
    """``train parallel`` in a job: each model in SM_MODEL_DIR/<slug>/, its logs, metrics and manifests in S3."""
    from multitype.predictor import load_predictor

    bucket = s3_server.make_bucket()
    job = "multitype-parallel-20261201-120000"
    base = opt_ml.build_tree(tmp_path / "ml", *project, {"task": "parallel", "models": "minilm", "num-epochs": 1,
                                                         "root": f"s3://{bucket}/proj"})
    code, out, err = opt_ml.run(base, job, env=s3_server.env)
    assert code == 0, err
    assert load_predictor(base / "model" / "minilm", device="cpu").labels == ["business", "politics", "sports", "tech"]
    assert (base / "checkpoints" / "minilm-best").is_dir()
    record = _s3_json(s3_server, bucket, "proj/results/transformer/minilm_metrics.json")
    assert record["epochs_trained"] == 1  # the num-epochs hyperparameter reached the child
    result = _s3_json(s3_server, bucket, f"proj/runs/sagemaker/{job}/result.json")
    assert result["task"] == "parallel" and result["run_ids"][1:] == [record["run_id"]]
    assert result["models"] == {"minilm": {"metrics": "results/transformer/minilm_metrics.json",
                                           "model_dir": "minilm"}}
    keys = s3_server.list_keys(bucket, "proj/")
    parent = result["run_ids"][0]
    assert {f"proj/runs/{parent}/manifest.json", f"proj/runs/{parent}/minilm.log",
            f"proj/runs/{record['run_id']}/manifest.json"} <= set(keys)
